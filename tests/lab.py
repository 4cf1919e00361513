"""A shaped-link test lab: the test process (the probe) in the root namespace, servers in a
network namespace of their own, joined by a veth pair shaped with htb in each direction.

    with Lab(down="100Mbit", up="20Mbit") as lab:
        lab.start_netprobe_server()
        lab.start_iperf3_server()
        url = lab.netprobe_url            # http://198.18.K.2:8080
        lab.iperf3(reverse=True)          # reference download rate, bytes/s
        lab.reshape(down="20Mbit")

A lab with distance: asking for a round trip, loss or jitter joins the two sides through two TUN
devices and the delay line (tests/delayline.c, built here with the system `cc`) instead of the
veth pair; htb still shapes the rates on the TUN devices.

    with Lab(down="100Mbit", rtt_ms=30, loss=0.005) as lab:   # 15 ms each way, 0.5 % each way
        ...
        lab.delay_stats()                 # the delay line's own counters: lost, dropped, late

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range), one /30 per lab, so labs in
parallel test processes never collide. Everything is torn down on exit, even after a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netprobe.units import parse_rate

NETPROBE_PORT = 8080
IPERF3_PORT = 5201


def lab_unavailable() -> str | None:
    """Why a lab cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "the lab needs root to create network namespaces (CI runs as root)"
    for tool in ("ip", "tc", "iperf3"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (bash probes/dev-setup.sh installs it)"
    return None


def run(*args: str, netns: str | None = None, check: bool = True) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


DELAYLINE_SOURCE = Path(__file__).with_name("delayline.c")


def delayline_binary() -> Path:
    """The delay line, compiled once per version of its source into a cache directory."""
    digest = hashlib.sha256(DELAYLINE_SOURCE.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netprobe-lab"
    binary = cache / f"delayline-{digest}"
    if not binary.exists():
        if shutil.which("cc") is None:
            raise RuntimeError("the delay line needs a C compiler: apt-get install gcc")
        cache.mkdir(parents=True, exist_ok=True)
        building = cache / f"{binary.name}.{os.getpid()}"  # parallel builds never collide
        run("cc", "-O2", "-Wall", "-o", str(building), str(DELAYLINE_SOURCE))
        building.replace(binary)
    return binary


def _free_subnet() -> int:
    used = run("ip", "-4", "-o", "addr", "show")
    candidates = [k for k in range(1, 255) if f"198.18.{k}." not in used]
    return random.choice(candidates)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LISTEN, TIME_WAIT = "0A", "06"  # TCP states as /proc/net/tcp prints them


def _tcp_sockets(pid: int | str, port: int) -> list[tuple[str, str]]:
    """(state, local address) of every TCP socket on local `port` in the network namespace of
    process `pid` ("self" for this one). Reads /proc, so no server ever sees a connection."""
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _remote, state = line.split()[1:4]
            address_hex, port_hex = local.split(":")
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address_hex)
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            address = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((state, socket.inet_ntop(family, address)))
    return found


def _listening(pid: int | str, host: str, port: int) -> bool:
    wanted = {host, "0.0.0.0", "::"}
    return any(s == LISTEN and a in wanted for s, a in _tcp_sockets(pid, port))


def wait_for_port(
    host: str,
    port: int,
    timeout_seconds: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until a server listens on host:port, without connecting to it: iperf3 counts any
    connection as a client and would then turn the real test away as "busy". With `process`,
    look in that process's network namespace and fail at once if it exits."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {host}:{port} exited with {process.returncode}")
        if _listening(process.pid if process else "self", host, port):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_seconds} s")
        time.sleep(0.05)


def iperf3_end(output: str) -> dict[str, Any]:
    """The "end" section of an `iperf3 -J` report; iperf3's own message when it failed."""
    try:
        report = json.loads(output)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 printed no JSON report: {output.strip()[:200]!r}") from None
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    end: dict[str, Any] = report["end"]
    return end


class Lab:
    """Root namespace (client side) ⇄ veth ⇄ server namespace, shaped both ways with htb."""

    def __init__(
        self,
        down: str = "100Mbit",
        up: str | None = None,
        *,
        rtt_ms: float = 0.0,
        loss: float = 0.0,
        jitter_ms: float = 0.0,
        reorder: bool = False,
        queue_packets: int | None = None,
        frames: bool = False,
    ) -> None:
        """`rtt_ms` is added to the round trip (half each way); `loss` is the chance that a
        packet is lost, in each direction; `jitter_ms` spreads each packet's one-way delay by up
        to that much either side, keeping order unless `reorder`. Any of them puts the delay
        line on the link. `queue_packets` sets the depth of the htb bottleneck queue (by default
        the device's queue length: 1000 packets on veth, 500 on TUN). By default htb passes a
        sender's GSO bursts (up to 64 kB) whole, so bytes arrive in lumps, as behind a Linux
        router that shapes without splitting them; `frames` makes both devices send one frame
        per packet, so they arrive one by one, as a modem serializes them onto the line."""
        tag = f"{os.getpid() % 100000}{random.randint(0, 99)}"
        self.netns = f"nplab{tag}"
        self.client_if = f"npc{tag}"
        self.server_if = f"nps{tag}"
        self.down = down
        self.up = up or down
        self.rtt_ms = rtt_ms
        self.loss = loss
        self.jitter_ms = jitter_ms
        self.reorder = reorder
        self.queue_packets = queue_packets
        self.frames = frames
        self.processes: list[subprocess.Popen[bytes]] = []
        self.iperf3_servers: dict[int, subprocess.Popen[bytes]] = {}
        self.delayline: subprocess.Popen[str] | None = None
        self.stats_path: Path | None = None
        self.client_ip = ""
        self.server_ip = ""

    @property
    def distant(self) -> bool:
        """True when the delay line joins the two sides."""
        return bool(self.rtt_ms or self.loss or self.jitter_ms)

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        run("ip", "netns", "add", self.netns)
        if self.distant:
            self._start_delayline()
        else:
            run("ip", "link", "add", self.client_if, "type", "veth", "peer", "name", self.server_if)
        run("ip", "link", "set", self.server_if, "netns", self.netns)
        if self.distant:  # no IPv6 chatter (router solicitations) through the delay line
            for interface, netns in ((self.client_if, None), (self.server_if, self.netns)):
                run("sysctl", "-qw", f"net.ipv6.conf.{interface}.disable_ipv6=1", netns=netns)
        k = _free_subnet()
        self.client_ip, self.server_ip = f"198.18.{k}.1", f"198.18.{k}.2"
        run("ip", "addr", "add", f"{self.client_ip}/30", "dev", self.client_if)
        run("ip", "link", "set", self.client_if, "up")
        run("ip", "addr", "add", f"{self.server_ip}/30", "dev", self.server_if, netns=self.netns)
        run("ip", "link", "set", self.server_if, "up", netns=self.netns)
        run("ip", "link", "set", "lo", "up", netns=self.netns)
        if self.frames:
            for interface, netns in ((self.server_if, self.netns), (self.client_if, None)):
                run("ip", "link", "set", "dev", interface, "gso_max_segs", "1", netns=netns)
        self._shape(self.server_if, self.down, self.netns, "add")
        self._shape(self.client_if, self.up, None, "add")
        if self.queue_packets:
            for interface, netns in ((self.server_if, self.netns), (self.client_if, None)):
                run("tc", "qdisc", "add", "dev", interface, "parent", "1:1", "pfifo", "limit",
                    str(self.queue_packets), netns=netns)  # fmt: skip

    def _start_delayline(self) -> None:
        """The delay line creates both TUN devices here; _build moves one to the server side."""
        self.stats_path = Path(tempfile.mkdtemp(prefix="delayline-")) / "stats.json"
        one_way_ms = str(self.rtt_ms / 2)
        self.delayline = subprocess.Popen(
            [
                str(delayline_binary()),
                "--probe-tun", self.client_if,
                "--server-tun", self.server_if,
                "--up-delay-ms", one_way_ms,
                "--down-delay-ms", one_way_ms,
                "--loss", str(self.loss),
                "--jitter-ms", str(self.jitter_ms),
                "--stats", str(self.stats_path),
                "--seed", str(random.getrandbits(62)),
                "--realtime",
                *(["--reorder"] if self.reorder else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.delayline.stdout is not None
        if self.delayline.stdout.readline().strip() != "ready":
            self.delayline.wait(timeout=10)
            assert self.delayline.stderr is not None
            raise RuntimeError(f"the delay line did not start: {self.delayline.stderr.read()}")

    def delay_stats(self, timeout_seconds: float = 10.0) -> dict[str, dict[str, float]]:
        """The delay line's counters now, per direction ("up", "down"): packets, bytes, lost
        (at random, as asked), dropped (its queue was full), late (it could not keep up)."""
        if self.delayline is None or self.stats_path is None:
            raise RuntimeError("this lab has no delay line (give rtt_ms, loss or jitter_ms)")
        before = self._read_stats()["seq"]
        self.delayline.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_seconds
        while True:
            stats = self._read_stats()
            if stats["seq"] > before:
                return {"up": stats["up"], "down": stats["down"]}
            if time.monotonic() > deadline:
                raise TimeoutError("the delay line did not report its counters")
            time.sleep(0.02)

    def _read_stats(self) -> dict[str, Any]:
        assert self.stats_path is not None
        try:
            stats: dict[str, Any] = json.loads(self.stats_path.read_text())
        except FileNotFoundError:  # not written yet
            return {"seq": 0}
        return stats

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()
        if self.delayline is not None:  # its devices go with it
            self.delayline.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.delayline.communicate(timeout=5)
            self.delayline.kill()
            self.delayline.wait()
        if self.stats_path is not None:
            shutil.rmtree(self.stats_path.parent, ignore_errors=True)
        run("ip", "link", "del", self.client_if, check=False)
        run("ip", "netns", "del", self.netns, check=False)

    # -- shaping ----------------------------------------------------------------------------
    @staticmethod
    def _shape(interface: str, rate: str, netns: str | None, verb: str) -> None:
        bits = int(parse_rate(rate) * 8)
        # A burst of about 4 ms at the rate keeps htb exact at high rates without bursting.
        burst = max(16_000, bits // 8 // 250)
        if verb == "add":
            run(
                "tc",
                "qdisc",
                "add",
                "dev",
                interface,
                "root",
                "handle",
                "1:",
                "htb",
                "default",
                "1",
                netns=netns,
            )
        run(
            "tc",
            "class",
            verb,
            "dev",
            interface,
            "parent",
            "1:",
            "classid",
            "1:1",
            "htb",
            "rate",
            f"{bits}bit",
            "ceil",
            f"{bits}bit",
            "burst",
            str(burst),
            "cburst",
            str(burst),
            netns=netns,
        )

    def reshape(self, down: str | None = None, up: str | None = None) -> None:
        """Change the shaped rates while everything runs."""
        if down:
            self.down = down
            self._shape(self.server_if, down, self.netns, "change")
        if up:
            self.up = up
            self._shape(self.client_if, up, None, "change")

    # -- servers ----------------------------------------------------------------------------
    def spawn(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a process inside the server namespace; it is killed on close."""
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *args], stdout=out, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def start_netprobe_server(self, port: int = NETPROBE_PORT) -> str:
        server = self.spawn(
            sys.executable, "-m", "netprobe", "serve", "--host", self.server_ip, "--port", str(port)
        )
        wait_for_port(self.server_ip, port, process=server)
        return self.url(port)

    def start_iperf3_server(self, port: int = IPERF3_PORT) -> None:
        server = self.spawn("iperf3", "-s", "-B", self.server_ip, "-p", str(port))
        wait_for_port(self.server_ip, port, process=server)
        self.iperf3_servers[port] = server

    def wait_for_iperf3_idle(self, port: int = IPERF3_PORT, timeout_seconds: float = 30.0) -> None:
        """Wait until the iperf3 server has closed every connection of its last test: it
        serves one test at a time, and across a long round trip a client that follows another
        at once can reach it before it has seen the last one end (it then refuses as busy)."""
        server = self.iperf3_servers.get(port)
        if server is None:  # not ours to watch
            return
        deadline = time.monotonic() + timeout_seconds
        while any(s not in (LISTEN, TIME_WAIT) for s, _ in _tcp_sockets(server.pid, port)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the iperf3 server on port {port} stayed busy")
            time.sleep(0.05)

    def url(self, port: int = NETPROBE_PORT) -> str:
        return f"http://{self.server_ip}:{port}"

    @property
    def netprobe_url(self) -> str:
        return self.url()

    # -- the reference -------------------------------------------------------------------------
    def iperf3(
        self,
        *,
        reverse: bool,
        seconds: int = 6,
        omit: int = 2,
        streams: int = 4,
        port: int = IPERF3_PORT,
    ) -> dict[str, float]:
        """iperf3's receiver figure (bytes/s) and client CPU, download when `reverse`."""
        args = [
            "iperf3",
            "-c",
            self.server_ip,
            "-p",
            str(port),
            "-J",
            "-t",
            str(seconds),
            "-O",
            str(omit),
            "-P",
            str(streams),
        ]
        if reverse:
            args.append("-R")
        self.wait_for_iperf3_idle(port)
        end = iperf3_end(run(*args, check=False))
        return {
            "bytes_per_second": end["sum_received"]["bits_per_second"] / 8,
            "bytes": float(end["sum_received"]["bytes"]),
            "cpu_percent": end["cpu_utilization_percent"]["host_total"],
        }

    def interface_bytes(self) -> int:
        """Bytes sent plus received on the probe's side of the link (its 'WAN')."""
        stats = Path("/sys/class/net") / self.client_if / "statistics"
        return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())
