"""The BNetzA measurement campaign: which stored tests form a conforming series, what is missing.

The 2021 rule wants 30 measurements, 10 on each of 3 local calendar days; within a day at
least 5 minutes apart and at least 3 hours between the 5th and the 6th; at least one whole day
without measurements between two measurement days; all days within 14 calendar days. The
agent asks `plan_campaign` before each scheduled test:

    plan = plan_campaign(records, now, config.de_bnetza.campaign, config.zone())
    plan.done, plan.required          # 17, 30
    plan.next_slot                    # earliest conforming start (UTC), None when complete

Tests are taken greedily in time order, which yields the earliest possible completion: a test
that breaks a spacing rule is simply not part of the series; a day that ends with fewer than
10 tests is dropped; the oldest days slide out when the series would exceed 14 days. A test
joins the series only when it is valid and every direction it measured succeeded. Spacing is
measured in real elapsed time (UTC), days in the line's local calendar.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from netprobe.compliance.config import BnetzaCampaign
from netprobe.compliance.series import parse_utc
from netprobe.results import DIRECTIONS, Direction


@dataclass(frozen=True)
class CampaignMeasurement:
    """A stored test that counts for the campaign."""

    record_id: str
    started_at: datetime
    directions: tuple[Direction, ...]


@dataclass
class CampaignDay:
    """One local calendar day of the series."""

    day: date
    measurements: list[CampaignMeasurement] = field(default_factory=list)


@dataclass
class Campaign:
    """A series of measurement days; complete when it has every day with every measurement."""

    days: list[CampaignDay] = field(default_factory=list)

    def complete(self, rules: BnetzaCampaign) -> bool:
        return len(self.days) == rules.days and all(
            len(d.measurements) == rules.per_day for d in self.days
        )

    def record_ids(self) -> list[str]:
        return [m.record_id for d in self.days for m in d.measurements]


@dataclass
class CampaignPlan:
    """Progress of the series in progress and when the next measurement may start."""

    days: list[CampaignDay]
    done: int
    required: int
    complete: bool
    next_slot: datetime | None
    deadline: date | None
    completed_campaigns: int

    def measurements(self, direction: Direction) -> int:
        """Measurements in the series that include `direction`."""
        return sum(direction in m.directions for d in self.days for m in d.measurements)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "required": self.required,
            "complete": self.complete,
            "next_slot": self.next_slot.isoformat() if self.next_slot else None,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "completed_campaigns": self.completed_campaigns,
            "days": [
                {"day": d.day.isoformat(), "records": [m.record_id for m in d.measurements]}
                for d in self.days
            ],
        }


def qualifying(records: Iterable[dict[str, Any]]) -> list[CampaignMeasurement]:
    """Valid line tests whose every measured direction succeeded, in time order."""
    out = []
    for record in records:
        if record.get("kind", "line") != "line" or not record.get("valid", True):
            continue
        measured = [d for d in DIRECTIONS if isinstance(record.get(d), dict)]
        if not measured or not all(
            record[d].get("ok") and record[d].get("bytes_per_second") is not None for d in measured
        ):
            continue
        out.append(
            CampaignMeasurement(
                str(record.get("id", "")), parse_utc(record["started_at"]), tuple(measured)
            )
        )
    return sorted(out, key=lambda m: (m.started_at, m.record_id))


def campaigns(
    records: Iterable[dict[str, Any]], rules: BnetzaCampaign, zone: ZoneInfo
) -> list[Campaign]:
    """Every completed series in time order, then the one in progress (possibly empty)."""
    done: list[Campaign] = []
    current = Campaign()
    for measurement in qualifying(records):
        day = measurement.started_at.astimezone(zone).date()
        today = current.days[-1] if current.days else None
        if today is not None and today.day == day:
            if len(today.measurements) < rules.per_day and _spaced(today, measurement, rules):
                today.measurements.append(measurement)
        elif _start_day(current, day, rules):
            current.days.append(CampaignDay(day, [measurement]))
        if current.complete(rules):
            done.append(current)
            current = Campaign()
    return [*done, current]


def _spaced(day: CampaignDay, measurement: CampaignMeasurement, rules: BnetzaCampaign) -> bool:
    """Whether `measurement` may follow the day's last one."""
    gap = _gap_seconds(len(day.measurements), rules)
    elapsed = (measurement.started_at - day.measurements[-1].started_at).total_seconds()
    return elapsed >= gap


def _gap_seconds(count: int, rules: BnetzaCampaign) -> float:
    """The least time between measurement number `count` of a day and the next."""
    return rules.break_seconds if count == rules.break_after else rules.spacing_seconds


def _start_day(current: Campaign, day: date, rules: BnetzaCampaign) -> bool:
    """Open `day` as a new measurement day if the rules allow; drops what can no longer count."""
    if current.days and len(current.days[-1].measurements) < rules.per_day:
        current.days.pop()
    if current.days and (day - current.days[-1].day).days <= rules.days_between:
        return False
    while current.days and (day - current.days[0].day).days >= rules.window_days:
        current.days.pop(0)
    return True


def plan_campaign(
    records: Iterable[dict[str, Any]], now: datetime, rules: BnetzaCampaign, zone: ZoneInfo
) -> CampaignPlan:
    """Progress of the series and the earliest conforming start of its next measurement."""
    *finished, current = campaigns(records, rules, zone)
    if not current.days and finished:
        last = finished[-1]
        return CampaignPlan(
            last.days, rules.required, rules.required, True, None, None, len(finished)
        )
    days = list(current.days)
    slot = _next_slot(days, now, rules, zone)
    while (
        days
        and len(days[-1].measurements) < rules.per_day
        and days[-1].day != _local_day(slot, zone)
    ):
        days.pop()
    slot_day = _local_day(slot, zone)
    days = [d for d in days if (slot_day - d.day).days < rules.window_days]
    deadline = days[0].day + timedelta(days=rules.window_days - 1) if days else None
    return CampaignPlan(
        days,
        sum(len(d.measurements) for d in days),
        rules.required,
        False,
        slot,
        deadline,
        len(finished),
    )


def _next_slot(
    days: list[CampaignDay], now: datetime, rules: BnetzaCampaign, zone: ZoneInfo
) -> datetime:
    today = _local_day(now, zone)
    last_day = days[-1] if days else None
    if last_day is not None and len(last_day.measurements) < rules.per_day:
        if last_day.day == today:
            count = len(last_day.measurements)
            gap = timedelta(seconds=_gap_seconds(count, rules))
            earliest = max(now, last_day.measurements[-1].started_at + gap)
            if _day_can_finish(earliest, count, rules, zone):
                return earliest
        days = days[:-1]
    first = days[-1].day + timedelta(days=rules.days_between + 1) if days else today
    day = max(first, today)
    start = now if day == today else _midnight(day, zone)
    if not _day_can_finish(start, 0, rules, zone):
        start = _midnight(_local_day(start, zone) + timedelta(days=1), zone)
    return start


def _day_can_finish(start: datetime, count: int, rules: BnetzaCampaign, zone: ZoneInfo) -> bool:
    """Whether measurement `count + 1` at `start` still lets the day reach its full count."""
    needed = sum(_gap_seconds(k, rules) for k in range(count + 1, rules.per_day))
    end_of_day = _midnight(_local_day(start, zone) + timedelta(days=1), zone)
    return start + timedelta(seconds=needed) < end_of_day


def _local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local calendar day begins, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
