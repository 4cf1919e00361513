"""One line test: pick the backend for a server, measure each direction, return a LineResult."""

from __future__ import annotations

import asyncio
import importlib
import statistics
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from netprobe.errors import ConfigError, MeasurementError
from netprobe.events import Sink, result_event
from netprobe.measure.engine import EngineOptions
from netprobe.measure.latency import LoadedLatency
from netprobe.results import Direction, DirectionResult, LineResult, Server


class Backend(Protocol):
    """What every protocol offers the agent, the CLI and the reports."""

    protocol: str

    async def connect(self) -> Server: ...

    async def ping(self) -> float: ...

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult: ...


@runtime_checkable
class KeepsConnections(Protocol):
    """A backend that keeps a connection open between calls (its latency connection)."""

    async def close(self) -> None: ...


# protocol name -> "module:class" taking the server URL; adding a protocol is one module and
# one line here. Imported only when used: aiohttp (ndt7) and speedtest-cli (ookla) would
# otherwise cost every command a quarter of a second, more on a Pi.
BACKENDS: dict[str, str] = {
    "native": "netprobe.measure.native:NativeBackend",
    "ookla": "netprobe.measure.ookla:OoklaBackend",
    "librespeed": "netprobe.measure.librespeed:LibreSpeedBackend",
    "cloudflare": "netprobe.measure.cloudflare:CloudflareBackend",
    "iperf3": "netprobe.measure.iperf3:Iperf3Backend",
    "ndt7": "netprobe.measure.ndt7:Ndt7Backend",
}
# Idle latency is the median of a few pings; loaded latency the median of those taken while a
# direction runs (the queue a download or upload builds up is what users feel).
IDLE_PINGS = 5


DIRECTION_CHOICES: dict[str, list[Direction]] = {
    "down": ["download"],
    "up": ["upload"],
    "both": ["download", "upload"],
}


def directions_named(choice: str) -> list[Direction]:
    """The directions meant by `--direction down|up|both`."""
    try:
        return DIRECTION_CHOICES[choice]
    except KeyError:
        raise ConfigError(f"--direction must be down, up or both, not {choice!r}") from None


def backend_for(protocol: str, url: str) -> Backend:
    try:
        module, _, name = BACKENDS[protocol].partition(":")
    except KeyError:
        raise ConfigError(f"unknown protocol {protocol!r} (known: {', '.join(BACKENDS)})") from None
    factory: Callable[[str], Backend] = getattr(importlib.import_module(module), name)
    return factory(url)


async def measure_line(
    backend: Backend,
    directions: Sequence[Direction],
    options: EngineOptions,
    sink: Sink | None = None,
) -> LineResult:
    """Measure the directions one after another; failures are kept as failed results."""
    try:
        server = await backend.connect()
    except MeasurementError as exc:
        result = LineResult(
            server=Server(url=getattr(backend, "url", ""), protocol=backend.protocol)
        )
        method = options.method(backend.protocol, 0, "receiver")
        for direction in directions:
            setattr(
                result, direction, DirectionResult.failed(direction, exc.reason, str(exc), method)
            )
        result.outcome = "failed"
        if sink is not None:
            sink.emit(result_event(result.to_dict()))
        return result
    result = LineResult(server=server)
    try:
        result.idle_latency_seconds = await _idle_latency(backend)
        for direction in directions:
            setattr(result, direction, await _measure_loaded(backend, direction, options, sink))
    finally:
        if isinstance(backend, KeepsConnections):
            await backend.close()
    if result.failed_reason() is not None:
        result.outcome = "failed"
    if sink is not None:
        sink.emit(result_event(result.to_dict()))
    return result


async def _idle_latency(backend: Backend) -> float | None:
    rtts: list[float] = []
    for _ in range(IDLE_PINGS):
        try:
            rtts.append(await backend.ping())
        except MeasurementError:
            break
    return statistics.median(rtts) if rtts else None


async def _measure_loaded(
    backend: Backend, direction: Direction, options: EngineOptions, sink: Sink | None
) -> DirectionResult:
    """Measure one direction while pinging the server: the result carries the loaded latency."""
    loaded_latency = LoadedLatency(backend.ping, sink)
    pinging = asyncio.create_task(loaded_latency.run())
    try:
        measured = await backend.measure(direction, options, loaded_latency)
    finally:
        loaded_latency.stop()
        loaded = await pinging
    if measured.ok and loaded:
        measured.loaded_latency_seconds = statistics.median(loaded)
    return measured
