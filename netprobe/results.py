"""The typed result model shared by every backend, drive probe, the store and the reports.

A result is plain data: it serialises to a JSON-ready dict with `to_dict()` and back with
`from_dict()`. Rates are bytes per second of TCP payload (1 Mbit = 10^6 bit when shown), times
are seconds; a failed measurement has `ok=False`, a `reason` and `bytes_per_second=None`,
never a zero rate.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

Direction = Literal["download", "upload"]
DIRECTIONS: tuple[Direction, ...] = ("download", "upload")


def utc_now_iso() -> str:
    """Wall-clock time now, ISO 8601 in UTC with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def public_url(url: str) -> str:
    """`url` as it may be stored and shown: no `user:password@`, query values replaced by `*`
    (a token there is as secret as a password); a fragment dropped."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url.split("@")[-1].split("?")[0]
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = "&".join(f"{name}=*" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def without_secrets(value: Any) -> Any:
    """`value` (a record, or any part of one) with every URL in its text made `public_url`:
    an error message quoting a configured URL carries no password or token either."""
    if isinstance(value, str):
        return _URL_IN_TEXT.sub(lambda m: public_url(m.group()), value) if "://" in value else value
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def new_id() -> str:
    """A fresh unique id for a result or a run."""
    return uuid.uuid4().hex


@dataclass
class StreamSeries:
    """Cumulative payload bytes of one TCP stream, sampled on a monotonic clock.

    `t_seconds` counts from the start of the test (the first stream's start), so the series
    of all streams of a test share one timeline.
    """

    stream: int
    t_seconds: list[float] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamSeries:
        return cls(
            stream=data["stream"], t_seconds=list(data["t_seconds"]), bytes=list(data["bytes"])
        )


@dataclass
class Method:
    """How a figure was made, stored with every number so it can be judged later."""

    protocol: str = "native"
    engine: str = ""
    streams: int = 0
    warmup_rule: str = ""
    window_rule: str = ""
    aggregate: str = "rmbt"
    measured_at: str = "receiver"
    layer: str = "tcp_payload"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Method:
        return cls(**data)


@dataclass
class DirectionResult:
    """One direction of a line test: the steady rate and everything that produced it."""

    direction: Direction
    ok: bool
    bytes_per_second: float | None = None
    bytes: int = 0
    warmup_bytes: int = 0
    warmup_seconds: float = 0.0
    window_seconds: float = 0.0
    duration_seconds: float = 0.0
    total_bytes: int = 0
    streams: int = 0
    samples: list[StreamSeries] = field(default_factory=list)
    method: Method = field(default_factory=Method)
    loaded_latency_seconds: float | None = None
    cpu_seconds: float | None = None  # the client process's CPU while this direction ran
    reason: str | None = None
    error: str | None = None
    receipt: dict[str, Any] | None = None  # the server's signed receipt (serve/receipt.py)

    @classmethod
    def failed(
        cls, direction: Direction, reason: str, error: str, method: Method
    ) -> DirectionResult:
        return cls(direction=direction, ok=False, reason=reason, error=error, method=method)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DirectionResult:
        data = dict(data)
        data["samples"] = [StreamSeries.from_dict(s) for s in data.get("samples", [])]
        data["method"] = Method.from_dict(data.get("method", {}))
        return cls(**data)


@dataclass
class Server:
    """Who was measured against; never holds credentials (see `public_url`)."""

    url: str
    name: str = ""
    protocol: str = "native"
    version: str = ""

    def __post_init__(self) -> None:
        self.url = public_url(self.url)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Server:
        return cls(**data)


@dataclass
class Conditions:
    """What the probe saw around a test; the validity gates decide from these."""

    interface: str | None = None
    link_type: str | None = None
    link_speed_bytes_per_second: float | None = None
    cross_traffic_bytes_per_second: float | None = None
    cross_traffic_during_bytes_per_second: float | None = None
    cpu_percent: float | None = None
    held_seconds: float = 0.0
    hold_reasons: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conditions:
        return cls(**data)


class Outcome(Protocol):
    """What every direction of every kind of record says about how it ended."""

    ok: bool
    reason: str | None


@dataclass(kw_only=True)
class Record:
    """The fields every stored result has, line test and drive probe alike.

    `run_id` ties the results of one run together (a line test and the drive probes after it);
    `started_at` is UTC ISO 8601; `kind` names the record type ("line", "drive").
    """

    probe_id: str = ""
    run_id: str = field(default_factory=new_id)
    id: str = field(default_factory=new_id)
    started_at: str = field(default_factory=utc_now_iso)
    kind: str = ""

    def directions(self) -> Sequence[Outcome]:
        raise NotImplementedError

    def failed_reason(self) -> str | None:
        """The first failure reason among the directions, if any failed."""
        return next((d.reason for d in self.directions() if not d.ok), None)


@dataclass
class LineResult(Record):
    """One line test (download and/or upload against one server) with its conditions."""

    server: Server
    download: DirectionResult | None = None
    upload: DirectionResult | None = None
    idle_latency_seconds: float | None = None
    conditions: Conditions = field(default_factory=Conditions)
    valid: bool = True
    invalid_reason: str | None = None
    outcome: str = "ok"
    peak: bool | None = None
    kind: str = field(default="line", kw_only=True)

    def directions(self) -> list[DirectionResult]:
        return [d for d in (self.download, self.upload) if d is not None]

    def latency(self) -> dict[str, Any]:
        """Idle and loaded round trips as `speed --json` shows them (loaded per direction run)."""
        loaded = {d.direction: d.loaded_latency_seconds for d in self.directions()}
        return {"idle_seconds": self.idle_latency_seconds, "loaded_seconds": loaded}

    def to_dict(self) -> dict[str, Any]:
        # `latency` is a view of fields kept elsewhere in the dict; from_dict drops it.
        return {**dataclasses.asdict(self), "latency": self.latency()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineResult:
        data = dict(data)
        data.pop("latency", None)
        data["server"] = Server.from_dict(data["server"])
        data["conditions"] = Conditions.from_dict(data.get("conditions", {}))
        for direction in DIRECTIONS:
            if data.get(direction) is not None:
                data[direction] = DirectionResult.from_dict(data[direction])
        return cls(**data)
