"""Round-trip time, loss and path: ICMP echo, TCP SYN and TCP connect pings, traceroute,
and the sampler that measures latency while a throughput test loads the line.

ICMP echo, SYN ping and traceroute need raw sockets (CAP_NET_RAW) and scapy, which is imported
inside those functions only. Without the capability a ping falls back to timing TCP connects
(SYN → SYN-ACK, which is one round trip) and says so in `LatencyResult.note`:

    result = await ping("192.0.2.1", method="icmp", fallback_port=443, count=5)
    result.median_seconds, result.jitter_seconds, result.loss_ratio, result.method
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import math
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from netprobe.errors import MeasurementError, RawSocketDenied, TransportError
from netprobe.events import Event, NullSink, Sink

PingMethod = Literal["icmp", "tcp_syn", "tcp_connect"]
NO_RAW_SOCKETS = "no CAP_NET_RAW for {wanted}: measured TCP connect time to port {port} instead"


@dataclass
class LatencyResult:
    """Round trips to one host by one method; lost probes count in `sent`, not in `rtts`."""

    host: str
    method: PingMethod
    port: int | None = None
    sent: int = 0
    rtts_seconds: list[float] = field(default_factory=list)
    note: str | None = None

    @property
    def received(self) -> int:
        return len(self.rtts_seconds)

    @property
    def loss_ratio(self) -> float:
        return 1 - self.received / self.sent if self.sent else 0.0

    @property
    def min_seconds(self) -> float | None:
        return min(self.rtts_seconds) if self.rtts_seconds else None

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.rtts_seconds) if self.rtts_seconds else None

    @property
    def jitter_seconds(self) -> float | None:
        """Mean absolute difference of consecutive round trips (RFC 3550's idea, unsmoothed)."""
        r = self.rtts_seconds
        if len(r) < 2:
            return None
        return statistics.fmean(abs(b - a) for a, b in itertools.pairwise(r))

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "received": self.received,
            "loss_ratio": self.loss_ratio,
            "min_seconds": self.min_seconds,
            "median_seconds": self.median_seconds,
            "jitter_seconds": self.jitter_seconds,
        }


@dataclass
class Hop:
    """One traceroute hop: who answered at this TTL and how fast (None: nobody answered)."""

    ttl: int
    address: str | None
    rtt_seconds: float | None
    reached: bool = False


async def tcp_connect_rtt(
    host: str, port: int, timeout_seconds: float = 2.0, *, refusal_answers: bool = False
) -> float:
    """Seconds from SYN to an established connection: one round trip, no privilege needed.

    With `refusal_answers` a refused connection (RST) counts as the round trip it is (a ping);
    without, it is a TransportError (a server check). Silence is always a TransportError.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_seconds):
            _, writer = await asyncio.open_connection(host, port, family=family)
    except ConnectionRefusedError:
        if refusal_answers:
            return time.perf_counter() - start
        raise TransportError(f"connection refused by {host}:{port}", reason="refused") from None
    except TimeoutError:
        raise TransportError(
            f"no answer from {host}:{port} within {timeout_seconds:g} s", reason="timeout"
        ) from None
    except OSError as exc:
        raise TransportError(
            f"cannot reach {host}:{port}: {exc.strerror or exc}", reason="unreachable"
        ) from None
    elapsed = time.perf_counter() - start
    writer.transport.abort()
    return elapsed


async def ping(
    host: str,
    *,
    method: Literal["icmp", "tcp_syn", "tcp_connect"] = "icmp",
    port: int = 443,
    count: int = 5,
    interval_seconds: float = 0.2,
    timeout_seconds: float = 2.0,
) -> LatencyResult:
    """Ping `host` `count` times; raw-socket methods fall back to TCP connect without privilege.

    `port` is the SYN ping's target and the fallback's.
    """
    if method != "tcp_connect":
        probe = _icmp_echo if method == "icmp" else _syn_probe
        try:
            return await asyncio.to_thread(
                _raw_ping, probe, host, port, method, count, interval_seconds, timeout_seconds
            )
        except RawSocketDenied:
            result = await _connect_ping(host, port, count, interval_seconds, timeout_seconds)
            result.note = NO_RAW_SOCKETS.format(wanted=method, port=port)
            return result
    return await _connect_ping(host, port, count, interval_seconds, timeout_seconds)


async def icmp_rtt(host: str, timeout_seconds: float = 2.0) -> float:
    """One ICMP echo round trip; RawSocketDenied without privilege, TransportError if lost."""
    rtt = await asyncio.to_thread(_denied_as_raw, _icmp_echo, host, 0, timeout_seconds)
    if rtt is None:
        raise TransportError(
            f"no echo reply from {host} within {timeout_seconds:g} s", reason="timeout"
        )
    return rtt


async def _connect_ping(
    host: str, port: int, count: int, interval_seconds: float, timeout_seconds: float
) -> LatencyResult:
    result = LatencyResult(host=host, method="tcp_connect", port=port)
    last_error: TransportError | None = None
    for k in range(count):
        if k:
            await asyncio.sleep(interval_seconds)
        result.sent += 1
        try:
            rtt = await tcp_connect_rtt(host, port, timeout_seconds, refusal_answers=True)
            result.rtts_seconds.append(rtt)
        except TransportError as exc:
            last_error = exc
            if exc.reason != "timeout":
                raise
    if not result.rtts_seconds and last_error is not None:
        raise last_error
    return result


def _raw_ping(
    probe: Callable[[str, int, float], float | None],
    host: str,
    port: int,
    method: PingMethod,
    count: int,
    interval_seconds: float,
    timeout_seconds: float,
) -> LatencyResult:
    result = LatencyResult(host=host, method=method, port=port if method == "tcp_syn" else None)
    for k in range(count):
        if k:
            time.sleep(interval_seconds)
        result.sent += 1
        rtt = _denied_as_raw(probe, host, port, timeout_seconds)
        if rtt is not None:
            result.rtts_seconds.append(rtt)
    return result


def _denied_as_raw(
    probe: Callable[[str, int, float], float | None], host: str, port: int, timeout: float
) -> float | None:
    try:
        return probe(host, port, timeout)
    except OSError as exc:
        if isinstance(exc, PermissionError) or exc.errno in (errno.EPERM, errno.EACCES):
            raise RawSocketDenied(str(exc)) from None
        raise TransportError(
            f"cannot ping {host}: {exc.strerror or exc}", reason="unreachable"
        ) from None


def _scapy() -> Any:
    """scapy's layers and send/receive, imported on first use (it is slow to import)."""
    from scapy.config import conf
    from scapy.layers import inet
    from scapy.sendrecv import sr1

    conf.verb = 0
    # Routes may have changed since scapy read them (a VPN, a test lab): read them again.
    conf.route.resync()
    return inet, sr1


def _icmp_echo(host: str, port: int, timeout: float) -> float | None:
    inet, sr1 = _scapy()
    packet = inet.IP(dst=host) / inet.ICMP(id=0x4E50, seq=1)
    answer = sr1(packet, timeout=timeout)
    if answer is None or not answer.haslayer(inet.ICMP) or answer[inet.ICMP].type != 0:
        return None
    return float(answer.time - packet.sent_time)


def _syn_probe(host: str, port: int, timeout: float) -> float | None:
    inet, sr1 = _scapy()
    packet = inet.IP(dst=host) / inet.TCP(dport=port, flags="S")
    answer = sr1(packet, timeout=timeout)
    # SYN-ACK or RST: either is the host answering within one round trip.
    if answer is None or not answer.haslayer(inet.TCP):
        return None
    return float(answer.time - packet.sent_time)


def traceroute(host: str, max_hops: int = 8, timeout_seconds: float = 1.0) -> list[Hop]:
    """The first hops towards `host` (ICMP echo with growing TTL); needs CAP_NET_RAW.

    Raises RawSocketDenied without the capability: there is no unprivileged fallback.
    """
    hops: list[Hop] = []
    for ttl in range(1, max_hops + 1):
        inet, sr1 = _scapy()
        packet = inet.IP(dst=host, ttl=ttl) / inet.ICMP(id=0x4E51, seq=ttl)
        try:
            answer = sr1(packet, timeout=timeout_seconds)
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.errno in (errno.EPERM, errno.EACCES):
                raise RawSocketDenied(str(exc)) from None
            raise
        if answer is None:
            hops.append(Hop(ttl, None, None))
            continue
        reached = answer.haslayer(inet.ICMP) and answer[inet.ICMP].type == 0
        hops.append(Hop(ttl, answer.src, float(answer.time - packet.sent_time), reached))
        if reached:
            break
    return hops


class LoadedLatency:
    """Round trips from `probe()` while a throughput test loads the line: the loaded latency.

    It is also the test's sink (events pass on to `sink`): once `interval_seconds` have passed
    since the last ping started, the next goes out on the engine's next "sample", a wake-up the
    event loop has anyway; a ping of its own timer cost a second one. A backend that emits no
    samples is paced by the timer alone. A probe that fails or takes longer than the timeout is
    skipped, not counted as a figure.

        loaded = LoadedLatency(backend.ping, sink)
        pinging = asyncio.create_task(loaded.run())
        await backend.measure(direction, options, loaded)
        loaded.stop()
        rtts = await pinging
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[float]],
        sink: Sink | None = None,
        interval_seconds: float = 0.25,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.probe = probe
        self.sink = sink or NullSink()
        self.interval_seconds = interval_seconds
        self.timeout_seconds = timeout_seconds
        self.rtts_seconds: list[float] = []
        loop = asyncio.get_running_loop()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._due: asyncio.Future[None] = loop.create_future()
        self._paced_by_samples = False
        self._last_ping = -math.inf

    def emit(self, event: Event) -> None:
        self.sink.emit(event)
        if event.kind == "sample":
            self._paced_by_samples = True
            due = time.monotonic() - self._last_ping >= self.interval_seconds
            if due and not self._due.done():
                self._due.set_result(None)

    def stop(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)

    async def run(self) -> list[float]:
        """Ping until `stop()`; the round trips in seconds."""
        loop = asyncio.get_running_loop()
        while not self._stopped.done():
            self._last_ping = time.monotonic()
            # A ping that fails under load is skipped: it must not break the measurement.
            with contextlib.suppress(TimeoutError, OSError, MeasurementError):
                async with asyncio.timeout(self.timeout_seconds):
                    self.rtts_seconds.append(await self.probe())
            self._due = loop.create_future()
            # Samples pace it once they come; the timer, longer then, only covers a gap.
            timer = self.interval_seconds * (2 if self._paced_by_samples else 1)
            await asyncio.wait(
                (self._stopped, self._due), timeout=timer, return_when=asyncio.FIRST_COMPLETED
            )
        return self.rtts_seconds


async def latency_report(
    host: str, tcp_port: int | None, fallback_port: int, count: int, hops: int
) -> dict[str, Any]:
    """`netprobe latency`: the ping (ICMP, or TCP SYN to `tcp_port`) and optionally the path."""
    method: PingMethod = "tcp_syn" if tcp_port is not None else "icmp"
    port = tcp_port if tcp_port is not None else fallback_port
    result = await ping(host, method=method, port=port, count=count)
    report = result.to_dict()
    if hops:
        try:
            report["path"] = [asdict(h) for h in traceroute(host, hops)]
        except RawSocketDenied:
            report["path_error"] = "traceroute needs CAP_NET_RAW (run as root)"
    return report
