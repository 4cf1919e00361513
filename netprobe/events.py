"""The event protocol of a run: the engine emits, sinks observe.

A measurement never knows who watches it. The CLI's progress bar, the JSON printer, the agent's
store and metrics are all sinks of the same events (m-lab/ndt7-client-go's emitter model):

    sink = Recorder()
    await measure_line(server, options, sink=sink)
    [e.kind for e in sink.events]  # ["started", "sample", ..., "warmup_done", ..., "finished"]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

EventKind = Literal["started", "streams", "sample", "warmup_done", "finishing", "finished", "error"]


@dataclass(frozen=True)
class Event:
    """Something that happened in a run; `detail` holds the kind's payload."""

    kind: EventKind
    direction: str
    t_seconds: float = 0.0
    bytes_per_second: float | None = None
    streams: int = 0
    total_bytes: int = 0
    message: str = ""
    detail: Any = None


class Sink(Protocol):
    """Anything that observes a run."""

    def emit(self, event: Event) -> None: ...


class NullSink:
    """A sink that ignores everything."""

    def emit(self, event: Event) -> None:
        return None


class Recorder:
    """A sink that keeps every event; handy in tests and for replay."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


class Fanout:
    """Sends each event to several sinks; one failing sink never breaks the run."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                continue
