"""The event protocol of a run: a run emits, sinks observe.

A measurement never knows who watches it. A line test (`measure_line`) and a drive probe
(`probe_drives`) emit the same kinds of events, per direction "started", "sample"...,
"finished" (or "error"), and end with one "result" event whose `detail` is the finished
record (a `to_dict()`). The CLI's progress line and JSON printer, and the agent's store (which
seals), metric sources, push loop and log are all sinks of these events
(m-lab/ndt7-client-go's emitter model); the agent fans each event out to all of them:

    sink = Fanout([Recorder(), JsonSink(print)])
    await measure_line(backend, ["download"], options, sink)
    [e.kind for e in sink.sinks[0].events]  # ["started", "sample", ..., "finished", "result"]

Adding a sink is one class with `emit(event)` (or `observe(record)` on a `ResultObserver`)
and one line where the sinks are wired (`netprobe/agent/main.py`, `Agent.sinks`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

EventKind = Literal[
    "started", "streams", "sample", "warmup_done", "finishing", "finished", "error", "result"
]

log = logging.getLogger("netprobe.events")


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


def result_event(record: dict[str, Any]) -> Event:
    """The last event of a run: `detail` is the finished record."""
    return Event(kind="result", direction="", detail=record)


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
    """Sends each event to several sinks in order; one failing sink never breaks the run."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                log.exception("sink %s failed on a %s event", type(sink).__name__, event.kind)


class ResultObserver:
    """A sink that only wants finished records: `observe(record)` for each "result" event."""

    def emit(self, event: Event) -> None:
        if event.kind == "result":
            self.observe(event.detail)

    def observe(self, record: dict[str, Any]) -> None:
        raise NotImplementedError


class JsonSink(ResultObserver):
    """Writes each finished record as one JSON line (`--json`, `results export`)."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write

    def observe(self, record: dict[str, Any]) -> None:
        self.write(json.dumps(record, separators=(",", ":")))


class HoldResult:
    """Passes a run's events on but its "result": for a caller that completes the record
    (the agent adds conditions and validity) and emits the completed one itself."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def emit(self, event: Event) -> None:
        if event.kind != "result":
            self.sink.emit(event)
