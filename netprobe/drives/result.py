"""The result of one cloud-drive probe: per direction, the rates, the times and the throttle seen.

Like a line result it is plain data (`to_dict()`/`from_dict()`), and a failure is `ok=False`
with a `reason`, never a zero rate. It never holds a credential or a signed URL.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from netprobe.results import DIRECTIONS, Direction, Record
from netprobe.units import format_rate, format_size

GIBIBYTE = 1024**3


@dataclass
class DriveTransfer:
    """One direction of a drive probe.

    `bytes_per_second` is the steady rate of one connection (what a user of the free tier gets),
    measured after the burst, if there was one: `burst_seconds` long from the first byte,
    `burst_bytes` in all, at `burst_bytes_per_second`. `steady_seconds` is how long the steady
    state held; `stop_reason` what ended the download: "steady" (held long enough),
    "max_bytes" (the drive's byte limit per probe) or "time_limit".
    `per_second_bytes[i]` are the payload bytes moved in second i after the first byte.
    `multi_bytes_per_second` is the aggregate of `multi_connections` parallel connections when
    the drive is configured to classify with more than one. `floor` is the severity
    ("critical", "warning") when the steady rate is under `floor_bytes_per_second`. On a
    transfer that is ok, `reason`/`error` note what went wrong in the N-connection phase.
    """

    direction: Direction
    ok: bool
    bytes_per_second: float | None = None
    burst_bytes_per_second: float | None = None
    burst_seconds: float | None = None
    burst_bytes: int | None = None
    steady_seconds: float | None = None
    stop_reason: str | None = None
    ttfb_seconds: float | None = None
    link_seconds: float | None = None
    bytes: int = 0
    duration_seconds: float = 0.0
    per_second_bytes: list[int] = field(default_factory=list)
    multi_connections: int = 0
    multi_bytes_per_second: float | None = None
    multi_refused: int = 0
    throttle: str = "unknown"
    line_ratio: float | None = None
    paid_ratio: float | None = None
    gibibyte_seconds: float | None = None
    floor: str | None = None
    floor_bytes_per_second: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriveTransfer:
        return cls(**data)


@dataclass
class DriveResult(Record):
    """One probe of one drive account, run back to back with a line test (same `run_id`)."""

    drive: str
    access: str
    tier: str = "unknown"
    group: str | None = None
    download: DriveTransfer | None = None
    upload: DriveTransfer | None = None
    budget_bytes: int = 0
    kind: str = field(default="drive", kw_only=True)

    def directions(self) -> list[DriveTransfer]:
        return [d for d in (self.download, self.upload) if d is not None]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriveResult:
        data = dict(data)
        for direction in DIRECTIONS:
            if data.get(direction) is not None:
                data[direction] = DriveTransfer.from_dict(data[direction])
        return cls(**data)


def describe(result: DriveResult, transfer: DriveTransfer) -> str:
    """One line a person reads: the steady rate first, then where the time went."""
    head = f"{result.drive} {transfer.direction}"
    if not transfer.ok:
        return f"{head}: failed ({transfer.reason}): {transfer.error}"
    rate = transfer.bytes_per_second or 0.0
    parts = [f"{head}: {format_rate(rate)} steady"]
    if transfer.burst_bytes_per_second is not None:
        parts.append(
            f"burst {format_rate(transfer.burst_bytes_per_second)} for "
            f"{transfer.burst_seconds or 0.0:.1f} s ({format_size(transfer.burst_bytes or 0)})"
        )
    if transfer.multi_connections:
        parts.append(
            f"{transfer.multi_connections} connections "
            f"{format_rate(transfer.multi_bytes_per_second or 0.0)}"
        )
    if transfer.ttfb_seconds is not None:
        parts.append(f"ttfb {transfer.ttfb_seconds * 1000:.0f} ms")
    if transfer.link_seconds is not None:
        parts.append(f"link {transfer.link_seconds * 1000:.0f} ms")
    parts.append(f"{format_size(transfer.bytes)}")
    parts.append(f"throttle {transfer.throttle}")
    if transfer.line_ratio is not None:
        parts.append(f"{transfer.line_ratio:.1%} of the line")
    if transfer.gibibyte_seconds is not None:
        parts.append(f"1 GiB in {_duration(transfer.gibibyte_seconds)}")
    if transfer.floor:
        parts.append(f"below the {transfer.floor} floor")
    ended = _stopped_early(result, transfer)
    return ", ".join(parts) + (f"; {ended}" if ended else "")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _stopped_early(result: DriveResult, transfer: DriveTransfer) -> str | None:
    """Why the download ended before its steady state held long enough, if it did."""
    held = f"the rate was steady for only {transfer.steady_seconds or 0.0:.1f} s"
    if transfer.stop_reason == "max_bytes":
        return (
            f"stopped at the drive's max_bytes of {format_size(result.budget_bytes)} "
            f"after {transfer.duration_seconds:.1f} s: {held} (raise max_bytes for a longer test)"
        )
    if transfer.stop_reason == "time_limit":
        return (
            f"stopped by the time limit after {transfer.duration_seconds:.1f} s: {held} "
            "(raise time_limit for a longer test)"
        )
    return None
