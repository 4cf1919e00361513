"""iperf3 as a backend: `iperf3 -J` against a configured server (the LAN ceiling check).

The figure is iperf3's receiver total over the test after its `-O` omitted seconds
(`end.sum_received`), so the method says so; the series are iperf3's per-interval totals.

    backend = Iperf3Backend("iperf3://192.0.2.1:5201")   # or "192.0.2.1" for port 5201
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any
from urllib.parse import urlsplit

from netprobe.errors import (
    MeasurementError,
    ProtocolError,
    RawSocketDenied,
    ServerRefused,
    TransportError,
)
from netprobe.events import Event, Sink
from netprobe.measure.engine import EngineOptions
from netprobe.measure.latency import icmp_rtt
from netprobe.results import Direction, DirectionResult, Method, Server, StreamSeries

DEFAULT_PORT = 5201
DEFAULT_SECONDS = 10.0
OMIT_SECONDS = 2


def parse_target(url: str) -> tuple[str, int]:
    """(host, port) from "iperf3://host:port", "host:port" or "host"."""
    parts = urlsplit(url if "://" in url else f"iperf3://{url}")
    if not parts.hostname:
        raise ValueError(f"not an iperf3 server: {url!r} (expected iperf3://HOST[:PORT])")
    try:
        return parts.hostname, parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None


def method_for(streams: int, seconds: float, omit: int, version: str) -> Method:
    return Method(
        protocol="iperf3",
        engine=version or "iperf3",
        streams=streams,
        warmup_rule=f"iperf3 -O {omit}: the first {omit} s omitted",
        window_rule=f"iperf3 -t {seconds:g}",
        aggregate="iperf3_receiver_total",
        measured_at="receiver",
    )


def parse_report(
    report: dict[str, Any], direction: Direction, seconds: float, omit: int
) -> DirectionResult:
    """A DirectionResult from `iperf3 -J` output; iperf3's own error is a failure with a reason."""
    start = report.get("start", {})
    version = str(start.get("version", ""))
    streams = int(start.get("test_start", {}).get("num_streams", 0) or 0)
    method = method_for(streams, seconds, omit, version)
    if report.get("error"):
        error = str(report["error"])
        reason = "busy" if "busy" in error else "refused" if "refused" in error else "iperf3"
        return DirectionResult.failed(direction, reason, f"iperf3: {error}", method)
    try:
        received = report["end"]["sum_received"]
        intervals = report["intervals"]
        series = StreamSeries(stream=0)
        total = 0
        for interval in intervals:
            total += int(interval["sum"]["bytes"])
            series.t_seconds.append(float(interval["sum"]["end"]))
            series.bytes.append(total)
        rate = float(received["bits_per_second"]) / 8
        window_bytes = int(received["bytes"])
        window_seconds = float(received["seconds"])
    except (KeyError, TypeError, ValueError) as exc:
        return DirectionResult.failed(
            direction, "protocol", f"iperf3's JSON report lacks {exc}", method
        )
    if rate <= 0 or window_bytes <= 0:
        return DirectionResult.failed(direction, "no_data", "iperf3 moved no data", method)
    return DirectionResult(
        direction=direction,
        ok=True,
        bytes_per_second=rate,
        bytes=window_bytes,
        warmup_seconds=float(omit),
        window_seconds=window_seconds,
        duration_seconds=window_seconds + omit,
        total_bytes=total,
        streams=streams,
        samples=[series],
        method=method,
    )


class Iperf3Backend:
    """Runs the iperf3 binary against an iperf3 server; download is `-R`."""

    protocol = "iperf3"

    def __init__(self, url: str, *, binary: str = "iperf3", timeout_seconds: float = 5.0) -> None:
        self.host, self.port = parse_target(url)
        self.url = f"iperf3://{self.host}:{self.port}"
        self.binary = binary
        self.timeout_seconds = timeout_seconds

    async def connect(self) -> Server:
        # No test connection to the server: iperf3 serves one client at a time and takes any
        # connection for a test's control channel; iperf3 itself reports a dead server.
        if shutil.which(self.binary) is None:
            raise ProtocolError(
                f"the {self.binary} binary is not installed (apt-get install iperf3)",
                reason="no_iperf3",
            )
        return Server(url=self.url, name=self.url, protocol=self.protocol)

    async def ping(self) -> float:
        """An ICMP echo: a TCP connect would disturb the iperf3 server (see connect)."""
        try:
            return await icmp_rtt(self.host, self.timeout_seconds)
        except RawSocketDenied:
            raise MeasurementError(
                "iperf3 latency needs ICMP (CAP_NET_RAW)", reason="no_raw_socket"
            ) from None

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        seconds = options.duration_seconds or DEFAULT_SECONDS
        seconds = min(seconds, max(1.0, options.time_limit_seconds - OMIT_SECONDS))
        streams = options.streams or options.streams_min
        args = [
            self.binary,
            "-c",
            self.host,
            "-p",
            str(self.port),
            "-J",
            "-t",
            f"{seconds:g}",
            "-O",
            str(OMIT_SECONDS),
            "-P",
            str(streams),
            "--connect-timeout",
            str(int(self.timeout_seconds * 1000)),
        ]
        if direction == "download":
            args.append("-R")
        if sink is not None:
            sink.emit(Event(kind="started", direction=direction))
        try:
            report = await self._run(args, seconds + OMIT_SECONDS + 2 * self.timeout_seconds)
        except MeasurementError as exc:
            if sink is not None:
                sink.emit(Event(kind="error", direction=direction, message=str(exc)))
            return DirectionResult.failed(
                direction, exc.reason, str(exc), method_for(streams, seconds, OMIT_SECONDS, "")
            )
        result = parse_report(report, direction, seconds, OMIT_SECONDS)
        if sink is not None:
            sink.emit(
                Event(
                    kind="finished" if result.ok else "error",
                    direction=direction,
                    t_seconds=result.duration_seconds,
                    bytes_per_second=result.bytes_per_second,
                    total_bytes=result.total_bytes,
                    streams=result.streams,
                    message=result.error or "",
                    detail=result,
                )
            )
        return result

    async def _run(self, args: list[str], timeout_seconds: float) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(timeout_seconds):
                stdout, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TransportError(
                f"iperf3 did not finish within {timeout_seconds:g} s", reason="timeout"
            ) from None
        try:
            report = json.loads(stdout)
        except ValueError:
            raise ServerRefused(
                f"iperf3 exited with {process.returncode} without a JSON report", reason="iperf3"
            ) from None
        if not isinstance(report, dict):
            raise ProtocolError("iperf3's report is not a JSON object", reason="protocol")
        return report
