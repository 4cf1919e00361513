"""Peak hours and the line's time zone: one model for the stored flag, the schedule and verdicts.

A result's stored `peak` flag (from the contract's `peak_hours`) and every policy's peak or busy
window (from its `PeakWindow`) are both read through `PeakHours`, on the wall clock of the one
zone `line_zone()` picks, so a flag and a verdict cannot disagree about which clock they read:

    evening = PeakHours.parse(["19:00-23:00"])             # may cross midnight: "22:00-01:00"
    zone = line_zone(compliance_timezone, probe_timezone)   # first set; else the system's; else UTC
    evening.is_peak(datetime.now(UTC), zone)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass
class PeakHours:
    """Daily wall-clock windows `[start, end)` (an end before the start crosses midnight)."""

    windows: list[tuple[time, time]] = field(default_factory=list)
    weekdays_only: bool = False

    @classmethod
    def parse(cls, specs: list[str]) -> PeakHours:
        """Windows from "HH:MM-HH:MM" texts; ValueError naming the one that does not parse."""
        windows = []
        for spec in specs:
            start, sep, end = spec.partition("-")
            try:
                if not sep:
                    raise ValueError
                windows.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
            except ValueError:
                raise ValueError(
                    f"peak_hours: expected a window such as 19:00-23:00, got {spec!r}"
                ) from None
        return cls(windows)

    @classmethod
    def from_hours(cls, start_hour: int, end_hour: int, *, weekdays_only: bool) -> PeakHours:
        """One window of whole hours; an end of 24 is the end of the day."""
        return cls(
            [(time(start_hour), time(end_hour) if end_hour < 24 else time.max)], weekdays_only
        )

    def contains(self, local: datetime) -> bool:
        """True when a local time falls in a window (and on a weekday, if so restricted)."""
        if self.weekdays_only and local.weekday() >= 5:
            return False
        clock = local.time().replace(tzinfo=None)
        for start, end in self.windows:
            if start <= end:
                inside = start <= clock and (clock < end or end == time.max)
            else:
                inside = clock >= start or clock < end
            if inside:
                return True
        return False

    def is_peak(self, when: datetime, zone: tzinfo | None) -> bool:
        """True when `when` (aware) falls in a window, read on the wall clock of `zone`."""
        return self.contains(when.astimezone(zone))


def line_zone(*names: str | None) -> ZoneInfo:
    """The line's local zone: the first name set, else the system's zone, else UTC.

    Raises ValueError naming an unknown zone.
    """
    name = next((n for n in names if n), None)
    if name is None:
        return system_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (e.g. Europe/Berlin)") from None


def system_zone(localtime: Path = Path("/etc/localtime")) -> ZoneInfo:
    """The system's named time zone (from $TZ or the /etc/localtime link); UTC if it has none.

    A named zone is needed, not the current UTC offset, so that daylight-saving changes inside
    the evaluated period are applied to each test at its own date.
    """
    names = [os.environ.get("TZ", "").lstrip(":")]
    if localtime.is_symlink():
        names.append(str(localtime.resolve()).partition("zoneinfo/")[2])
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")
