"""One line test: pick the backend for a server, measure each direction, return a LineResult."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from netprobe.errors import MeasurementError
from netprobe.events import Sink
from netprobe.measure.engine import EngineOptions
from netprobe.measure.native import NativeBackend
from netprobe.results import Direction, DirectionResult, LineResult, Server


class Backend(Protocol):
    """What every protocol offers the agent, the CLI and the reports."""

    protocol: str

    async def connect(self) -> Server: ...

    async def ping(self) -> float: ...

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult: ...


# protocol name -> factory(url); adding a protocol is one module and one line here.
BACKENDS: dict[str, Callable[[str], Backend]] = {"native": NativeBackend}


def backend_for(protocol: str, url: str) -> Backend:
    try:
        factory = BACKENDS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(BACKENDS)})") from None
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
        return result
    result = LineResult(server=server)
    try:
        result.idle_latency_seconds = await backend.ping()
    except MeasurementError:
        result.idle_latency_seconds = None
    for direction in directions:
        setattr(result, direction, await backend.measure(direction, options, sink))
    if result.failed_reason() is not None:
        result.outcome = "failed"
    return result
