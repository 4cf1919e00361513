/* delayline: the lab's distance. Forwards IP packets between two TUN devices, the probe side
 * ("up" is what the probe sends) and the server side ("down" is what the server sends), holding
 * each packet for a one-way delay per direction, with random loss, optional jitter (without
 * reordering unless asked) and a bounded queue (drop-tail, counted). Rates are shaped by htb on
 * the TUN devices' egress, not here.
 *
 * It creates both devices in its own network namespace and prints "ready" once they exist; the
 * caller moves the server-side device into the server's namespace and sets addresses. The
 * devices vanish when it exits. Its counters are written as one JSON line to --stats every
 * second, on SIGUSR1 and on exit (SIGTERM, SIGINT), and to stderr on exit: packets forwarded,
 * lost at random, dropped because the queue was full, and released late (more than --late-us
 * after their due time: the delay line itself was the bottleneck).
 *
 * Build: cc -O2 -o delayline delayline.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define SLOT_BYTES 2048 /* one packet; the devices keep an MTU of 1500 */
#define READ_BATCH 64   /* packets read from one device per wake-up, for fairness */
/* Packets due this soon go out with those due now: one wake-up serves several packets, which
 * cuts the CPU at 100 Mbit/s by about a quarter; the wake-up's own latency makes up for it. */
#define EARLY_NS 100000

struct held {
    int64_t due_ns;
    uint64_t seq; /* ties keep arrival order */
    int slot;
};

struct direction {
    const char *name;
    int in_fd, out_fd;
    int64_t delay_ns, jitter_ns;
    double loss;
    /* the queue: a min-heap on (due, seq) over a pool of packet slots */
    struct held *heap;
    int count, capacity;
    unsigned char *pool;
    int *free_slots, free_count;
    uint16_t *lengths;
    int64_t last_due_ns;
    uint64_t seq;
    /* counters */
    uint64_t packets, bytes, lost, dropped, late, max_queue;
    int64_t max_late_ns;
};

static volatile sig_atomic_t stop_requested, stats_requested;
static int64_t late_threshold_ns = 1000000;
static int reorder;
static uint64_t rng_state = 88172645463325252ULL;

static void on_stop(int sig) { (void)sig; stop_requested = 1; }
static void on_stats(int sig) { (void)sig; stats_requested = 1; }

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double uniform(void) { /* xorshift64: fast, and good enough for loss and jitter */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int open_tun(const char *name) {
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        perror("delayline: /dev/net/tun");
        exit(1);
    }
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "delayline: cannot create TUN device %s: %s\n", name, strerror(errno));
        exit(1);
    }
    return fd;
}

static int earlier(const struct held *a, const struct held *b) {
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_push(struct direction *d, struct held item) {
    int i = d->count++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!earlier(&item, &d->heap[parent]))
            break;
        d->heap[i] = d->heap[parent];
        i = parent;
    }
    d->heap[i] = item;
}

static struct held heap_pop(struct direction *d) {
    struct held top = d->heap[0], last = d->heap[--d->count];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= d->count)
            break;
        if (child + 1 < d->count && earlier(&d->heap[child + 1], &d->heap[child]))
            child++;
        if (!earlier(&d->heap[child], &last))
            break;
        d->heap[i] = d->heap[child];
        i = child;
    }
    if (d->count > 0)
        d->heap[i] = last;
    return top;
}

static void setup(struct direction *d, int capacity) {
    d->capacity = capacity;
    d->heap = calloc((size_t)capacity, sizeof *d->heap);
    d->pool = malloc((size_t)capacity * SLOT_BYTES); /* touched, so resident, only as used */
    d->free_slots = calloc((size_t)capacity, sizeof *d->free_slots);
    d->lengths = calloc((size_t)capacity, sizeof *d->lengths);
    if (!d->heap || !d->pool || !d->free_slots || !d->lengths) {
        fprintf(stderr, "delayline: out of memory for a queue of %d packets\n", capacity);
        exit(1);
    }
    for (int i = 0; i < capacity; i++)
        d->free_slots[i] = capacity - 1 - i;
    d->free_count = capacity;
}

/* Read what the device has, up to a batch; each packet is lost, dropped or queued. */
static void take_in(struct direction *d, int64_t now) {
    static unsigned char discard[SLOT_BYTES];
    for (int n = 0; n < READ_BATCH; n++) {
        int slot = d->free_count > 0 ? d->free_slots[d->free_count - 1] : -1;
        unsigned char *buffer = slot >= 0 ? d->pool + (size_t)slot * SLOT_BYTES : discard;
        ssize_t length = read(d->in_fd, buffer, SLOT_BYTES);
        if (length <= 0)
            return;
        if (slot < 0) {
            d->dropped++;
            continue;
        }
        if (d->loss > 0 && uniform() < d->loss) {
            d->lost++;
            continue;
        }
        int64_t due = now + d->delay_ns;
        if (d->jitter_ns > 0) {
            due += (int64_t)((2 * uniform() - 1) * (double)d->jitter_ns);
            if (due < now)
                due = now;
            if (!reorder && due < d->last_due_ns)
                due = d->last_due_ns;
        }
        d->last_due_ns = due;
        d->free_count--;
        d->lengths[slot] = (uint16_t)length;
        heap_push(d, (struct held){due, d->seq++, slot});
        if ((uint64_t)d->count > d->max_queue)
            d->max_queue = (uint64_t)d->count;
    }
}

/* Write every packet that is due. */
static void release(struct direction *d, int64_t now) {
    while (d->count > 0 && d->heap[0].due_ns <= now + EARLY_NS) {
        struct held item = heap_pop(d);
        int64_t lateness = now - item.due_ns;
        if (lateness > late_threshold_ns)
            d->late++;
        if (lateness > d->max_late_ns)
            d->max_late_ns = lateness;
        ssize_t written =
            write(d->out_fd, d->pool + (size_t)item.slot * SLOT_BYTES, d->lengths[item.slot]);
        if (written > 0) {
            d->packets++;
            d->bytes += (uint64_t)written;
        } else {
            d->dropped++;
        }
        d->free_slots[d->free_count++] = item.slot;
    }
}

static void format_direction(char *out, size_t size, const struct direction *d) {
    snprintf(out, size,
             "\"%s\": {\"packets\": %llu, \"bytes\": %llu, \"lost\": %llu, \"dropped\": %llu, "
             "\"late\": %llu, \"max_late_seconds\": %.6f, \"max_queue_packets\": %llu}",
             d->name, (unsigned long long)d->packets, (unsigned long long)d->bytes,
             (unsigned long long)d->lost, (unsigned long long)d->dropped,
             (unsigned long long)d->late, (double)d->max_late_ns / 1e9,
             (unsigned long long)d->max_queue);
}

static void write_stats(const char *path, const struct direction *up, const struct direction *down,
                        unsigned long long written, FILE *also) {
    char a[512], b[512], line[1100], temporary[4096];
    format_direction(a, sizeof a, up);
    format_direction(b, sizeof b, down);
    snprintf(line, sizeof line, "{\"seq\": %llu, %s, %s}\n", written, a, b);
    if (also)
        fputs(line, also);
    if (!path)
        return;
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *f = fopen(temporary, "w");
    if (!f)
        return;
    fputs(line, f);
    fclose(f);
    rename(temporary, path); /* readers never see half a line */
}

static void usage(void) {
    fputs("usage: delayline --probe-tun NAME --server-tun NAME [--up-delay-ms F] "
          "[--down-delay-ms F] [--loss P] [--jitter-ms F] [--reorder] [--queue-packets N] "
          "[--late-us N] [--stats PATH] [--realtime] [--seed N]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    struct direction up = {.name = "up"}, down = {.name = "down"};
    const char *probe_tun = NULL, *server_tun = NULL, *stats_path = NULL;
    double up_ms = 0, down_ms = 0, jitter_ms = 0, loss = 0;
    int capacity = 16384, realtime = 0;
    static const struct option options[] = {
        {"probe-tun", required_argument, 0, 'p'}, {"server-tun", required_argument, 0, 's'},
        {"up-delay-ms", required_argument, 0, 'u'}, {"down-delay-ms", required_argument, 0, 'd'},
        {"loss", required_argument, 0, 'l'},      {"jitter-ms", required_argument, 0, 'j'},
        {"reorder", no_argument, 0, 'r'},         {"queue-packets", required_argument, 0, 'q'},
        {"late-us", required_argument, 0, 't'},   {"stats", required_argument, 0, 'o'},
        {"realtime", no_argument, 0, 'R'},        {"seed", required_argument, 0, 'S'},
        {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (c) {
        case 'p': probe_tun = optarg; break;
        case 's': server_tun = optarg; break;
        case 'u': up_ms = atof(optarg); break;
        case 'd': down_ms = atof(optarg); break;
        case 'l': loss = atof(optarg); break;
        case 'j': jitter_ms = atof(optarg); break;
        case 'r': reorder = 1; break;
        case 'q': capacity = atoi(optarg); break;
        case 't': late_threshold_ns = (int64_t)atof(optarg) * 1000; break;
        case 'o': stats_path = optarg; break;
        case 'R': realtime = 1; break;
        case 'S': rng_state = strtoull(optarg, NULL, 10) | 1; break;
        default: usage();
        }
    }
    if (!probe_tun || !server_tun || capacity < 1 || loss < 0 || loss >= 1 || up_ms < 0 ||
        down_ms < 0 || jitter_ms < 0)
        usage();

    prctl(PR_SET_TIMERSLACK, 1UL);     /* wake when asked, not up to 50 us later */
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* a test process killed outright takes the line along */
    if (realtime) {                /* a busy machine must not make the line late; best effort */
        struct sched_param param = {.sched_priority = 10};
        if (sched_setscheduler(0, SCHED_FIFO, &param) != 0)
            fprintf(stderr, "delayline: no realtime priority: %s\n", strerror(errno));
    }
    int probe_fd = open_tun(probe_tun), server_fd = open_tun(server_tun);
    up.in_fd = probe_fd, up.out_fd = server_fd, up.loss = loss;
    down.in_fd = server_fd, down.out_fd = probe_fd, down.loss = loss;
    up.delay_ns = (int64_t)(up_ms * 1e6), down.delay_ns = (int64_t)(down_ms * 1e6);
    up.jitter_ns = down.jitter_ns = (int64_t)(jitter_ms * 1e6);
    setup(&up, capacity);
    setup(&down, capacity);

    struct sigaction stop_action = {.sa_handler = on_stop}, stats_action = {.sa_handler = on_stats};
    sigaction(SIGTERM, &stop_action, NULL);
    sigaction(SIGINT, &stop_action, NULL);
    sigaction(SIGUSR1, &stats_action, NULL);
    printf("ready\n");
    fflush(stdout);

    unsigned long long written = 0;
    int64_t next_stats = now_ns();
    struct pollfd fds[2] = {{.fd = probe_fd, .events = POLLIN}, {.fd = server_fd, .events = POLLIN}};
    while (!stop_requested) {
        int64_t now = now_ns();
        if (stats_requested || now >= next_stats) {
            stats_requested = 0;
            write_stats(stats_path, &up, &down, ++written, NULL);
            next_stats = now + 1000000000;
        }
        int64_t wake = next_stats;
        if (up.count > 0 && up.heap[0].due_ns < wake)
            wake = up.heap[0].due_ns;
        if (down.count > 0 && down.heap[0].due_ns < wake)
            wake = down.heap[0].due_ns;
        int64_t wait_ns = wake > now ? wake - now : 0;
        struct timespec timeout = {wait_ns / 1000000000, wait_ns % 1000000000};
        int ready = ppoll(fds, 2, &timeout, NULL);
        if (ready < 0 && errno != EINTR) {
            perror("delayline: ppoll");
            return 1;
        }
        now = now_ns();
        if (ready > 0) {
            if (fds[0].revents & POLLIN)
                take_in(&up, now);
            if (fds[1].revents & POLLIN)
                take_in(&down, now);
        }
        release(&up, now);
        release(&down, now);
    }
    write_stats(stats_path, &up, &down, ++written, stderr);
    return 0;
}
