"""Stored line records → one direction's measurements in the line's local time.

Every evaluator starts here, so all policies agree on what counts: a record of kind `line`
marked valid whose direction was measured (`ok`) is a measurement; a valid record whose
direction failed is a failure with its reason (never a zero rate); an invalid record is set
apart with its `invalid_reason`. Times stay in UTC for arithmetic (durations across a
daylight-saving change are real durations) and are converted to local time only to read the
wall-clock hour and the calendar day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from netprobe.compliance.config import PeakWindow
from netprobe.results import Direction


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a naive one is taken as UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Measurement:
    """One direction of one valid line test."""

    record_id: str
    started_at: datetime
    local: datetime
    bytes_per_second: float

    @property
    def day(self) -> date:
        """The local calendar day the test started on."""
        return self.local.date()


@dataclass
class Series:
    """One direction's measurements, failures and invalid tests, in time order."""

    direction: Direction
    measurements: list[Measurement] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)

    @property
    def failed_tests(self) -> int:
        return sum(self.failures.values())

    @property
    def invalid_tests(self) -> int:
        return sum(self.invalid.values())

    def within(self, window: PeakWindow) -> list[Measurement]:
        return [m for m in self.measurements if in_window(m.local, window)]

    def outside(self, window: PeakWindow) -> list[Measurement]:
        return [m for m in self.measurements if not in_window(m.local, window)]


def in_window(local: datetime, window: PeakWindow) -> bool:
    """Whether a local time falls in the window's wall-clock hours (and days)."""
    return window.hours().contains(local)


def series(records: Iterable[dict[str, Any]], direction: Direction, zone: ZoneInfo) -> Series:
    """The measurements of `direction` among stored records, sorted by start time."""
    out = Series(direction)
    for record in records:
        result = record.get(direction)
        if record.get("kind", "line") != "line" or not isinstance(result, dict):
            continue
        if not record.get("valid", True):
            out.invalid[str(record.get("invalid_reason") or "unknown")] += 1
            continue
        rate = result.get("bytes_per_second")
        if not result.get("ok") or rate is None:
            out.failures[str(result.get("reason") or "unknown")] += 1
            continue
        started = parse_utc(record["started_at"])
        out.measurements.append(
            Measurement(str(record.get("id", "")), started, started.astimezone(zone), float(rate))
        )
    out.measurements.sort(key=lambda m: (m.started_at, m.record_id))
    return out


def reaches(bytes_per_second: float, threshold: float) -> bool:
    """At or above the threshold; a rate "exactly at" 90 % of a plan counts even when the
    product 0.9 × plan is one floating-point step above it."""
    return bytes_per_second >= threshold * (1 - 1e-12)


def share(measurements: list[Measurement], threshold: float) -> float | None:
    """The fraction of measurements at or above `threshold` bytes/s; None when there are none."""
    if not measurements:
        return None
    return sum(reaches(m.bytes_per_second, threshold) for m in measurements) / len(measurements)
