"""The BNetzA campaign planner: which tests form the series, and when the next one may start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from compliance_records import FULL_DAY, record
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.compliance.campaign import plan_campaign
from netprobe.compliance.config import BnetzaCampaign

BERLIN = ZoneInfo("Europe/Berlin")
RULES = BnetzaCampaign(enabled=True)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def day(date: str, slots: list[str] = FULL_DAY) -> list[dict[str, Any]]:
    return [record(f"{date}T{s}", tz="Europe/Berlin", ident=f"{date}/{s}") for s in slots]


def plan(records: list[dict[str, Any]], now: str) -> Any:
    return plan_campaign(records, local(now), RULES, BERLIN)


@pytest.mark.parametrize(
    ("records", "now", "next_slot", "done"),
    [
        ([], "2026-03-02T09:00", "2026-03-02T09:00", 0),
        ([], "2026-03-02T21:00", "2026-03-03T00:00", 0),
        (day("2026-03-02", FULL_DAY[:3]), "2026-03-02T08:21", "2026-03-02T08:25", 3),
        (day("2026-03-02", FULL_DAY[:5]), "2026-03-02T08:41", "2026-03-02T11:40", 5),
        (day("2026-03-02", FULL_DAY[:3]), "2026-03-02T21:30", "2026-03-03T00:00", 0),
        (day("2026-03-02", FULL_DAY[:3]), "2026-03-03T10:00", "2026-03-03T10:00", 0),
        (day("2026-03-02"), "2026-03-02T13:00", "2026-03-04T00:00", 10),
        (day("2026-03-02"), "2026-03-05T10:00", "2026-03-05T10:00", 10),
        (day("2026-03-02") + day("2026-03-04"), "2026-03-14T10:00", "2026-03-14T10:00", 20),
        (day("2026-03-02") + day("2026-03-04"), "2026-03-17T10:00", "2026-03-17T10:00", 10),
        (day("2026-03-02") + day("2026-03-04"), "2026-03-19T10:00", "2026-03-19T10:00", 0),
    ],
    ids=[
        "nothing yet",
        "too late today to fit 10 tests",
        "5 minutes after the last",
        "3 hours after the fifth",
        "today can no longer be completed",
        "yesterday's incomplete day is dropped",
        "a whole day must pass between measurement days",
        "later days are fine",
        "two days done",
        "the first day slid out of the 14 days",
        "both days slid out",
    ],
)
def test_next_slot_and_progress(
    records: list[dict[str, Any]], now: str, next_slot: str, done: int
) -> None:
    progress = plan(records, now)
    assert progress.next_slot == local(next_slot)
    assert (progress.done, progress.required, progress.complete) == (done, 30, False)


def test_deadline_is_fourteen_days_from_the_first_day() -> None:
    progress = plan(day("2026-03-02"), "2026-03-05T10:00")
    assert progress.deadline.isoformat() == "2026-03-15"


def test_a_complete_campaign_needs_nothing_more() -> None:
    records = day("2026-03-02") + day("2026-03-04") + day("2026-03-06")
    progress = plan(records, "2026-03-06T13:00")
    assert (progress.complete, progress.done, progress.next_slot) == (True, 30, None)
    assert progress.completed_campaigns == 1
    assert progress.measurements("download") == progress.measurements("upload") == 30


def test_failed_and_invalid_tests_do_not_count() -> None:
    records = [
        *day("2026-03-02", FULL_DAY[:2]),
        record("2026-03-02T08:20", tz="Europe/Berlin", down="fail:timeout"),
        record("2026-03-02T08:25", tz="Europe/Berlin", valid=False, invalid_reason="wifi"),
    ]
    assert plan(records, "2026-03-02T08:30").done == 2


def test_the_three_hour_break_is_real_time_across_the_clock_change() -> None:
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST. The fifth test at 00:50 CET is
    # 23:50 UTC; three real hours later is 02:50 UTC = 04:50 CEST, not 03:50 on the wall clock.
    night = day("2026-03-29", ["00:30", "00:35", "00:40", "00:45", "00:50"])
    progress = plan(night, "2026-03-29T01:00")
    assert progress.next_slot == datetime(2026, 3, 29, 2, 50, tzinfo=UTC)
    wall_clock_three_hours = record("2026-03-29T03:55", tz="Europe/Berlin", ident="early")
    real_three_hours = record("2026-03-29T04:50", tz="Europe/Berlin", ident="on-time")
    after = plan([*night, wall_clock_three_hours, real_three_hours], "2026-03-29T05:00")
    ids = [m.record_id for d in after.days for m in d.measurements]
    assert "early" not in ids
    assert "on-time" in ids
    assert after.done == 6


minutes = st.integers(min_value=0, max_value=60 * 24 * 20)


@settings(max_examples=80, deadline=None)
@given(offsets=st.lists(minutes, max_size=40), wait=st.integers(0, 60 * 24 * 3))
def test_a_test_at_the_next_slot_always_joins_the_series(offsets: list[int], wait: int) -> None:
    start = datetime(2026, 3, 20, tzinfo=UTC)
    records = [record(start + timedelta(minutes=m), ident=f"m{i}") for i, m in enumerate(offsets)]
    now = start + timedelta(minutes=max(offsets, default=0) + wait)
    progress = plan_campaign(records, now, RULES, BERLIN)
    assert progress.done <= progress.required
    if progress.next_slot is None:
        assert progress.complete
        return
    assert progress.next_slot >= now
    after = plan_campaign(
        [*records, record(progress.next_slot, ident="next")], progress.next_slot, RULES, BERLIN
    )
    assert "next" in [m.record_id for d in after.days for m in d.measurements]
