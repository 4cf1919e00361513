#!/usr/bin/env bash
# probes/pi/install.sh in a Raspberry-Pi-OS-like userland of another architecture, under qemu.
#
#   sudo scripts/pi-userland.sh armhf            # or arm64; WORKDIR defaults to /var/tmp/netprobe-pi-ARCH
#   sudo scripts/pi-userland.sh arm64 /srv/pi64
#
# Builds a Debian bookworm userland with mmdebstrap (python3 and ca-certificates, as Raspberry
# Pi OS Lite has them), copies this checkout in, runs the installer in a chroot (qemu-user-static
# through binfmt_misc; no systemd runs there, so the unit is installed and enabled, not started),
# then checks the installed agent: `config check` of the file the installer wrote, the agent on
# the offline demo configuration until it has measured and serves metrics, and `netprobe speed`
# from the userland across a shaped lab link (tests/lab.py) to a server in a network namespace.
# Prints the install time, the packages pip built from source and the venv's size. Slow (minutes
# per architecture); not run by CI. The machine's CA bundle is mounted in for pip's TLS.
set -euo pipefail

arch="${1:?usage: pi-userland.sh armhf|arm64 [WORKDIR]}"
work="${2:-/var/tmp/netprobe-pi-$arch}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$work/rootfs"
case "$arch" in
    armhf) qemu="qemu-arm" ;;
    arm64) qemu="qemu-aarch64" ;;
    *) echo "pi-userland.sh: ARCH must be armhf or arm64, not $arch" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "pi-userland.sh: run as root (chroot, mounts, network namespaces)" >&2
    exit 2
fi

log() { echo "pi-userland[$arch]: $*"; }

# binfmt_misc: run foreign binaries through qemu-user-static
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e "/proc/sys/fs/binfmt_misc/$qemu" ] || update-binfmts --enable "$qemu"

mkdir -p "$work"
if [ ! -x "$root/usr/bin/python3" ]; then
    log "building a bookworm $arch userland in $root"
    started=$(date +%s)
    mmdebstrap --arch="$arch" --variant=minbase --include=python3,ca-certificates \
        bookworm "$root" "deb $mirror bookworm main"
    log "userland built in $(($(date +%s) - started)) s"
fi

mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" || true; done
}
trap cleanup EXIT
bind() { mount --bind "$1" "$2"; mounts+=("$2"); }
bind /proc "$root/proc"
bind /sys "$root/sys"
bind /dev "$root/dev"
bind "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"

rm -rf "$root/src/netprobe"
mkdir -p "$root/src/netprobe"
tar -C "$checkout" --exclude=.git --exclude=.venv --exclude=__pycache__ --exclude='*.egg-info' \
    --exclude=build -cf - . | tar -C "$root/src/netprobe" -xf -

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt "$@"
}

log "running probes/pi/install.sh"
started=$(date +%s)
# each line of the installer with the seconds since it started: where the time goes
in_root bash /src/netprobe/probes/pi/install.sh 2>&1 | while IFS= read -r line; do
    printf '%4d s  %s\n' "$(($(date +%s) - started))" "$line"
done | tee "$work/install.log"
install_seconds=$(($(date +%s) - started))

in_root /opt/netprobe/bin/netprobe config check /etc/netprobe/agent.yml

# what pip built here: a wheel built locally carries the plain linux_<machine> tag
built="$(in_root sh -c 'grep -l "^Tag: .*-linux_" /opt/netprobe/lib/python3*/site-packages/*.dist-info/WHEEL || true' \
    | sed 's|.*/site-packages/||; s|\.dist-info/WHEEL||' | tr '\n' ' ')"
# shellcheck disable=SC2016  # dpkg-query's own format, not shell
debian="$(in_root dpkg-query -W -f='${Package} ${Version}\n' python3-cffi python3-psutil python3-yaml 2>/dev/null | tr '\n' ';')"
venv_size="$(du -sh "$root/opt/netprobe" | cut -f1)"

# the agent on the demo configuration, as the netprobe user, until it has measured
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
demo="$root/var/lib/netprobe/demo"
rm -rf "$demo"
install -d -o "$(in_root id -u netprobe)" -g "$(in_root id -g netprobe)" "$demo"
sed -e "s|listen: 127.0.0.1:9469|listen: 127.0.0.1:$port|" -e "s|path: demo-data/results.db|path: /var/lib/netprobe/demo/results.db|" \
    "$checkout/configs/demo.yml" >"$demo/demo.yml"
chroot --userspec=netprobe:netprobe "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/var/lib/netprobe \
    /opt/netprobe/bin/netprobe agent --config /var/lib/netprobe/demo/demo.yml >"$work/agent.log" 2>&1 &
agent=$!
measured=""
for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -q '^netprobe_line_tests_total{.*outcome="ok"'; then
        measured=yes
        break
    fi
    sleep 2
done
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^netprobe_(build_info|line_tests_total)' || true
kill "$agent"
wait "$agent" || true
[ -n "$measured" ] || { log "the agent did not measure within 240 s"; tail -20 "$work/agent.log"; exit 1; }

# netprobe speed from the userland over a shaped lab link to a server in a namespace
PYTHONPATH="$checkout:$checkout/tests" python3 - "$root" <<'PY'
import json, subprocess, sys
from lab import Lab

root = sys.argv[1]
with Lab(down="40Mbit", up="10Mbit") as lab:
    lab.start_netprobe_server()
    done = subprocess.run(
        ["chroot", root, "/opt/netprobe/bin/netprobe", "speed", "--server", lab.netprobe_url,
         "--duration", "3", "--json"],
        capture_output=True, text=True, check=True,
    )
result = json.loads(done.stdout)
for direction, plan in (("download", 40e6), ("upload", 10e6)):
    rate = result[direction]["bytes_per_second"] * 8
    print(f"lab link {direction}: {rate / 1e6:.1f} Mbit/s of {plan / 1e6:.0f} Mbit/s shaped")
PY

log "install: ${install_seconds} s; built from source: ${built:-none}; Debian: ${debian}; venv: ${venv_size}"
