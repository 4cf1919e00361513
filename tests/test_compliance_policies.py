"""Verdicts of every policy against hand-computed expectations, edges included.

Contract in every case: 100/40 Mbit/s theoretical, 80/32 normally available, 50/20 minimum.
Rates are written in Mbit/s; times in the line's local time unless they end in +00:00.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from compliance_records import record
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.compliance.config import POLICY_NAMES, ComplianceConfig, PeakWindow
from netprobe.compliance.contract import Contract
from netprobe.compliance.policies import POLICIES, evaluate_all
from netprobe.compliance.verdict import Verdict

CONTRACT = Contract.from_rates(
    download=100e6 / 8,
    upload=40e6 / 8,
    download_normal=80e6 / 8,
    upload_normal=32e6 / 8,
    download_minimum=50e6 / 8,
    upload_minimum=20e6 / 8,
)


def judge(
    policy: str, records: list[dict[str, Any]], tz: str = "UTC", **sections: Any
) -> dict[str, Verdict]:
    config = ComplianceConfig(policies=[policy], timezone=tz, **sections)
    return {v.direction: v for v in evaluate_all(records, CONTRACT, config)}


def series_at(times: list[str], rates: list[float], tz: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [
        record(t, tz=tz, down=r, **kwargs, ident=f"t{i}")
        for i, (t, r) in enumerate(zip(times, rates, strict=True))
    ]


def test_the_policy_table_matches_the_configurable_names() -> None:
    assert set(POLICIES) == set(POLICY_NAMES)


# ---- cn-miit: share of valid tests reaching 90 % of 100 Mbit/s, overall and 19–23 h ----------

SHANGHAI = "Asia/Shanghai"
DAY = [f"2026-03-02T{h:02d}:15" for h in (8, 9, 10, 11, 12, 13, 14, 15)]
EVENING = ["2026-03-02T20:15", "2026-03-02T21:15"]

CN_CASES = [
    # name, download rates for DAY + EVENING, extra records, expected status, overall, peak
    ("all reach", [95.0] * 10, [], "compliant", 1.0, 1.0),
    ("exactly 90 % of tests at exactly 90 %", [89.9] + [90.0] * 9, [], "compliant", 0.9, 1.0),
    ("the one slow test in the peak hours", [90.0] * 9 + [89.9], [], "deviation", 0.9, 0.5),
    ("8 of 10 reach", [95.0] * 8 + [50.0, 50.0], [], "deviation", 0.8, 0.0),
    (
        "invalid tests mixed in are not counted",
        [95.0] * 10,
        [record("2026-03-02T20:40", tz=SHANGHAI, down=5.0, valid=False, invalid_reason="cpu")] * 4,
        "compliant",
        1.0,
        1.0,
    ),
    (
        "failed tests are reported, not counted as zero",
        [95.0] * 10,
        [record("2026-03-02T22:00", tz=SHANGHAI, down="fail:timeout")] * 3,
        "compliant",
        1.0,
        1.0,
    ),
]


@pytest.mark.parametrize(
    ("rates", "extra", "status", "overall", "peak"),
    [c[1:] for c in CN_CASES],
    ids=[c[0] for c in CN_CASES],
)
def test_cn_miit_verdicts(
    rates: list[float], extra: list[dict[str, Any]], status: str, overall: float, peak: float
) -> None:
    records = series_at(DAY + EVENING, rates, SHANGHAI) + extra
    verdict = judge("cn-miit", records, SHANGHAI)["download"]
    assert (verdict.status, verdict.share) == (status, overall)
    assert verdict.criteria[1].value == peak
    assert verdict.valid_tests == 10
    assert verdict.invalid_tests == sum(not r["valid"] for r in extra)
    assert verdict.failed_tests == sum(not r["download"]["ok"] for r in extra if r["valid"])


def test_cn_miit_with_too_few_tests_is_undecided() -> None:
    verdict = judge("cn-miit", series_at(DAY + EVENING[:1], [95.0] * 9, SHANGHAI), SHANGHAI)
    assert verdict["download"].status == "undecided"
    assert "9 valid tests, 10 needed" in verdict["download"].criteria[0].note


def test_cn_miit_fails_on_peak_hours_alone() -> None:
    # 30 tests, 27 reach (90 % overall: met); the 3 slow ones are among the 10 evening tests.
    times = [f"2026-03-0{d}T{h:02d}:05" for d in (2, 3) for h in range(8, 18)]
    times += [f"2026-03-04T{h:02d}:{m:02d}" for h in (19, 20, 21, 22) for m in (0, 30)][:10]
    times += ["2026-03-05T19:10", "2026-03-05T19:40"]
    rates = [95.0] * 20 + [80.0, 80.0, 80.0] + [95.0] * 7
    verdict = judge("cn-miit", series_at(times, rates, SHANGHAI), SHANGHAI)["download"]
    overall, peak = verdict.criteria
    assert (overall.passed, overall.value) == (True, 0.9)
    assert (peak.passed, peak.value) == (False, 0.7)
    assert sorted(peak.deciding) == ["t20", "t21", "t22"]
    assert verdict.status == "deviation"


def test_cn_miit_thresholds_are_policy() -> None:
    records = series_at(DAY + EVENING, [85.0] * 10, SHANGHAI)
    assert judge("cn-miit", records, SHANGHAI)["download"].status == "deviation"
    lenient = dataclasses.replace(ComplianceConfig().cn_miit, reach_share=0.8)
    assert judge("cn-miit", records, SHANGHAI, cn_miit=lenient)["download"].status == "compliant"


def test_the_peak_window_is_read_in_the_lines_time_zone() -> None:
    # 11:30 UTC is 19:30 in Shanghai (peak) but not peak for a line configured in UTC.
    records = [
        *series_at(DAY, [95.0] * 8, SHANGHAI),
        record("2026-03-02T11:30:00+00:00", down=10.0, ident="evening"),
        record("2026-03-02T12:30:00+00:00", down=95.0, ident="evening2"),
    ]
    shanghai = judge("cn-miit", records, SHANGHAI)["download"]
    assert shanghai.criteria[1].value == 0.5
    assert shanghai.criteria[1].deciding == ["evening"]
    utc = judge("cn-miit", records, "UTC")["download"]
    assert utc.criteria[1].value is None


# ---- daylight-saving changes inside a peak window (Europe/Berlin, window 01–03 h local) ------

NIGHT = PeakWindow(1, 3)
DST_CASES = [
    # UTC start, in the 01–03 h window on the Berlin wall clock?
    ("2026-03-29T00:30:00+00:00", True),  # 01:30 CET
    ("2026-03-29T01:30:00+00:00", False),  # 03:30 CEST (02:xx never happens that night)
    ("2026-10-25T00:30:00+00:00", True),  # 02:30 CEST
    ("2026-10-25T01:30:00+00:00", True),  # 02:30 CET, the repeated hour
    ("2026-10-25T02:30:00+00:00", False),  # 03:30 CET
    ("2026-03-28T17:30:00+00:00", False),  # 18:30 CET (for the evening window below)
    ("2026-03-30T17:30:00+00:00", False),  # 19:30 CEST
]


def test_a_daylight_saving_change_inside_the_peak_window() -> None:
    records = [record(t, down=95.0, ident=f"n{i}") for i, (t, _) in enumerate(DST_CASES)]
    policy = dataclasses.replace(ComplianceConfig().cn_miit, peak=NIGHT, min_tests=1)
    verdict = judge("cn-miit", records, "Europe/Berlin", cn_miit=policy)["download"]
    expected = [f"n{i}" for i, (_, inside) in enumerate(DST_CASES) if inside]
    assert sorted(verdict.criteria[1].deciding) == expected


def test_the_evening_window_follows_the_clock_change() -> None:
    # 17:30 UTC is 18:30 before the change (off-peak) and 19:30 after it (peak).
    records = [
        record("2026-03-28T17:30:00+00:00", down=10.0, ident="before"),
        record("2026-03-30T17:30:00+00:00", down=95.0, ident="after"),
    ]
    policy = dataclasses.replace(ComplianceConfig().cn_miit, min_tests=1)
    peak = judge("cn-miit", records, "Europe/Berlin", cn_miit=policy)["download"].criteria[1]
    assert (peak.value, peak.deciding) == (1.0, ["after"])


# ---- de-bnetza: 3 days × 10, the three criteria -------------------------------------------------

BERLIN = "Europe/Berlin"
SLOTS = ["08:00", "08:10", "08:20", "08:30", "08:40", "12:00", "12:10", "12:20", "12:30", "12:40"]


def bnetza_days(days: dict[str, list[float]], up: float = 38.0) -> list[dict[str, Any]]:
    return [
        record(f"{day}T{slot}", tz=BERLIN, down=rate, up=up, ident=f"{day}/{slot}")
        for day, rates in days.items()
        for slot, rate in zip(SLOTS, rates, strict=False)
    ]


MON, WED, FRI, SUN = "2026-03-02", "2026-03-04", "2026-03-06", "2026-03-08"
BNETZA_CASES = [
    # name, per-day download rates, expected status, (days reaching 90 Mbit, share ≥ 80, days < 50)
    ("all fine", {MON: [95.0] * 10, WED: [95.0] * 10, FRI: [95.0] * 10}, "compliant", (3, 1.0, 0)),
    (
        "maximum exactly reached on 2 of 3 days",
        {MON: [90.0] + [85.0] * 9, WED: [85.0] * 9 + [90.0], FRI: [85.0] * 10},
        "compliant",
        (2, 1.0, 0),
    ),
    (
        "maximum reached on 1 day only",
        {MON: [90.0] + [85.0] * 9, WED: [85.0] * 10, FRI: [85.0] * 10},
        "deviation",
        (1, 1.0, 0),
    ),
    (
        "normal rate in exactly 90 % of measurements",
        {MON: [95.0] * 10, WED: [95.0] * 7 + [70.0] * 3, FRI: [95.0] * 10},
        "compliant",
        (3, 0.9, 0),
    ),
    (
        "normal rate in 26 of 30",
        {MON: [95.0] * 9 + [70.0], WED: [95.0] * 7 + [70.0] * 3, FRI: [95.0] * 10},
        "deviation",
        (3, 26 / 30, 0),
    ),
    (
        "minimum undercut on 1 day",
        {MON: [95.0] * 9 + [45.0], WED: [95.0] * 10, FRI: [95.0] * 10},
        "compliant",
        (3, 29 / 30, 1),
    ),
    (
        "minimum undercut on 2 days",
        {MON: [95.0] * 9 + [45.0], WED: [45.0] + [95.0] * 9, FRI: [95.0] * 10},
        "deviation",
        (3, 28 / 30, 2),
    ),
]


@pytest.mark.parametrize(
    ("days", "status", "figures"), [c[1:] for c in BNETZA_CASES], ids=[c[0] for c in BNETZA_CASES]
)
def test_de_bnetza_verdicts(
    days: dict[str, list[float]], status: str, figures: tuple[int, float, int]
) -> None:
    verdict = judge("de-bnetza", bnetza_days(days), BERLIN)["download"]
    assert verdict.status == status
    assert tuple(c.value for c in verdict.criteria) == figures
    assert verdict.valid_tests == 30


def test_de_bnetza_drops_a_day_with_too_few_tests() -> None:
    short = {MON: [95.0] * 10, WED: [40.0] * 9, FRI: [95.0] * 10}
    assert judge("de-bnetza", bnetza_days(short), BERLIN)["download"].status == "undecided"
    # A fourth day completes the campaign without the short one, whose slow tests do not count.
    verdict = judge("de-bnetza", bnetza_days({**short, SUN: [95.0] * 10}), BERLIN)["download"]
    assert verdict.status == "compliant"
    assert "2026-03-04/08:00" not in verdict.criteria[0].deciding
    assert verdict.valid_tests == 30


def test_de_bnetza_ignores_invalid_and_too_close_tests() -> None:
    records = bnetza_days({MON: [95.0] * 10, WED: [95.0] * 10, FRI: [95.0] * 10})
    records += [
        record(f"{WED}T08:02", tz=BERLIN, down=10.0, ident="too-close"),
        record(f"{FRI}T09:00", tz=BERLIN, down=10.0, valid=False, invalid_reason="cross_traffic"),
    ]
    verdict = judge("de-bnetza", records, BERLIN)["download"]
    assert (verdict.status, verdict.valid_tests, verdict.invalid_tests) == ("compliant", 30, 1)


def test_de_bnetza_leaves_out_criteria_the_contract_does_not_name() -> None:
    bare = Contract.from_rates(download=100e6 / 8, upload=40e6 / 8)
    config = ComplianceConfig(policies=["de-bnetza"], timezone=BERLIN)
    verdicts = evaluate_all(
        bnetza_days({MON: [95.0] * 10, WED: [95.0] * 10, FRI: [95.0] * 10}), bare, config
    )
    assert [c.name for c in verdicts[0].criteria] == ["maximum"]


# ---- us-fcc: % of advertised, buckets, 80/80 in weekday 19–23 h (America/New_York) -----------

NEW_YORK = "America/New_York"
WEEKDAY_EVENINGS = [f"2026-03-{d:02d}T{h}:10" for d in (2, 3, 4, 5, 6) for h in (19, 21)]


@pytest.mark.parametrize(
    ("ratios", "status", "consistent"),
    [
        ([75, 79, 80, 85, 90, 95, 96, 100, 100, 100], "deviation", 0.79),
        ([75, 80, 80, 85, 90, 95, 96, 100, 100, 100], "compliant", 0.80),
    ],
    ids=["20th percentile just below 80 %", "20th percentile exactly 80 %"],
)
def test_us_fcc_consistent_speed(ratios: list[float], status: str, consistent: float) -> None:
    records = series_at(WEEKDAY_EVENINGS, [float(r) for r in ratios], NEW_YORK)
    # Weekend evenings and weekday afternoons are outside the peak period.
    records += [record("2026-03-07T20:00", tz=NEW_YORK, down=10.0)] * 3
    records += [record("2026-03-02T15:00", tz=NEW_YORK, down=10.0)] * 3
    verdict = judge("us-fcc", records, NEW_YORK)["download"]
    assert verdict.status == status
    assert verdict.criteria[0].value == pytest.approx(consistent)
    assert verdict.valid_tests == 16
    assert verdict.figures["share_above_95"] == 4 / 16
    assert verdict.figures["share_80_to_95"] == ratios.count(80) / 16 + 3 / 16
    assert verdict.figures["share_below_80"] == (ratios.count(75) + ratios.count(79) + 6) / 16


def test_us_fcc_needs_enough_peak_tests() -> None:
    records = series_at(WEEKDAY_EVENINGS[:4], [100.0] * 4, NEW_YORK)
    assert judge("us-fcc", records, NEW_YORK)["download"].status == "undecided"


# ---- eu-berec: the normally available 80 Mbit/s -------------------------------------------------

OFF_PEAK = [f"2026-03-02T{h:02d}:30" for h in range(8, 18)]
PEAK = [f"2026-03-0{d}T{h}:30" for d in (2, 3) for h in (19, 20, 21, 22)]
PEAK += ["2026-03-04T19:30", "2026-03-04T20:30"]


@pytest.mark.parametrize(
    ("off_peak", "peak", "status"),
    [
        ([85.0] * 10, [85.0] * 9 + [70.0], "compliant"),
        ([85.0] * 10, [85.0] * 8 + [70.0] * 2, "deviation"),
        ([85.0] * 9 + [79.0], [85.0] * 10, "deviation"),
        ([80.0] * 10, [80.0] * 10, "compliant"),
    ],
    ids=["90 % of peak tests", "80 % of peak tests", "off-peak miss", "exactly at the rate"],
)
def test_eu_berec_peak_rule(off_peak: list[float], peak: list[float], status: str) -> None:
    records = series_at(OFF_PEAK + PEAK, off_peak + peak, "Europe/Paris")
    assert judge("eu-berec", records, "Europe/Paris")["download"].status == status


@pytest.mark.parametrize(
    ("reaching", "status"), [(19, "compliant"), (18, "deviation")], ids=["95 %", "90 %"]
)
def test_eu_berec_day_rule(reaching: int, status: str) -> None:
    rates = [85.0] * reaching + [60.0] * (20 - reaching)
    records = series_at(OFF_PEAK + PEAK, rates, "Europe/Paris")
    policy = dataclasses.replace(ComplianceConfig().eu_berec, rule="day")
    verdict = judge("eu-berec", records, "Europe/Paris", eu_berec=policy)["download"]
    assert (verdict.status, verdict.share) == (status, reaching / 20)


# ---- au-accc: underperforming when < 20 % of busy-hour tests reach 75 Mbit/s ------------------

SYDNEY = "Australia/Sydney"
BUSY = [f"2026-03-{d:02d}T{h}:20" for d in (2, 3, 4, 5, 6) for h in (19, 22)]


@pytest.mark.parametrize(
    ("fast", "status"),
    [(2, "compliant"), (1, "deviation")],
    ids=["2 of 10 reach exactly 75 %", "1 of 10 reaches"],
)
def test_au_accc_underperforming(fast: int, status: str) -> None:
    rates = [75.0] * fast + [60.0] * (10 - fast)
    verdicts = judge("au-accc", series_at(BUSY, rates, SYDNEY), SYDNEY)
    assert list(verdicts) == ["download"]
    assert (verdicts["download"].status, verdicts["download"].share) == (status, fast / 10)


def test_au_accc_busy_hours_are_sydney_evenings() -> None:
    # 09:20 UTC is 20:20 in Sydney (AEDT, UTC+11); in UTC these are morning tests.
    times = [f"2026-03-{d:02d}T09:20:00+00:00" for d in range(2, 12)]
    records = [record(t, down=90.0) for t in times]
    assert judge("au-accc", records, SYDNEY)["download"].status == "compliant"
    assert judge("au-accc", records, "UTC")["download"].status == "undecided"


# ---- properties -----------------------------------------------------------------------------------

hours = st.integers(min_value=0, max_value=23 * 60 + 59)
rates = st.floats(min_value=1.0, max_value=120.0)
tests = st.lists(st.tuples(st.integers(0, 6), hours, rates), min_size=0, max_size=40)


def _records(spec: list[tuple[int, int, float]]) -> list[dict[str, Any]]:
    return [
        record(f"2026-03-{2 + day:02d}T{minute // 60:02d}:{minute % 60:02d}", tz=SHANGHAI, down=r)
        for day, minute, r in spec
    ]


@settings(max_examples=60, deadline=None)
@given(spec=tests, extra=st.tuples(st.integers(0, 6), hours, st.floats(90.0, 150.0)))
def test_an_extra_passing_test_never_turns_a_cn_miit_pass_into_a_fail(
    spec: list[tuple[int, int, float]], extra: tuple[int, int, float]
) -> None:
    before = judge("cn-miit", _records(spec), SHANGHAI)["download"]
    after = judge("cn-miit", _records([*spec, extra]), SHANGHAI)["download"]
    if before.compliant:
        assert after.compliant


@settings(max_examples=40, deadline=None)
@given(spec=tests, policy=st.sampled_from(POLICY_NAMES), seed=st.integers(0, 2**16))
def test_invalid_tests_and_order_never_change_a_verdict(
    spec: list[tuple[int, int, float]], policy: str, seed: int
) -> None:
    records = _records(spec)
    noisy = (
        records
        + [record("2026-03-03T20:00", tz=SHANGHAI, down=1.0, valid=False, invalid_reason="wifi")]
        * 3
    )
    random.Random(seed).shuffle(noisy)
    before = [(v.status, v.share) for v in judge(policy, records, SHANGHAI).values()]
    after = [(v.status, v.share) for v in judge(policy, noisy, SHANGHAI).values()]
    assert before == after


@settings(max_examples=40, deadline=None)
@given(
    spec=tests, index=st.integers(0, 39), policy=st.sampled_from(["us-fcc", "eu-berec", "au-accc"])
)
def test_a_faster_test_never_turns_compliance_into_a_deviation(
    spec: list[tuple[int, int, float]], index: int, policy: str
) -> None:
    if not spec:
        return
    faster = list(spec)
    day, minute, rate = faster[index % len(spec)]
    faster[index % len(spec)] = (day, minute, rate + 30.0)
    before = judge(policy, _records(spec), SHANGHAI)["download"]
    after = judge(policy, _records(faster), SHANGHAI)["download"]
    if before.compliant:
        assert after.compliant
