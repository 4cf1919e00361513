"""eu-berec: is the normally available rate actually available (BEREC guidelines, Art. 4(1)(d) of
Regulation 2015/2120)?

BEREC leaves the figure to each national regulator and gives two examples, both policy here
(`compliance.eu_berec`): `rule: peak` — reached off-peak (`off_peak_share`, default every test)
and in 90 % of peak-hour tests; `rule: day` — reached in 95 % of all tests. Shares of tests
stand in for shares of hours. A contract without a normally available rate is judged against
its theoretical rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.series import Measurement, reaches, series, share
from netprobe.compliance.verdict import Criterion, Verdict, verdict
from netprobe.results import DIRECTIONS
from netprobe.units import format_rate

POLICY = "eu-berec"


def evaluate(
    records: Iterable[dict[str, Any]], contract: Contract, config: ComplianceConfig
) -> list[Verdict]:
    """One verdict per direction."""
    policy = config.eu_berec
    records = list(records)
    verdicts = []
    for direction in DIRECTIONS:
        measured = series(records, direction, config.zone())
        promised = contract.direction(direction)
        normal = promised.normal if promised.normal is not None else promised.theoretical
        rate = format_rate(normal)
        window = policy.peak
        hours = f"{window.start_hour:02d}–{window.end_hour:02d} h"
        if policy.rule == "peak":
            criteria = [
                _available(
                    "normal_off_peak",
                    f"normally available {rate} reached in at least "
                    f"{policy.off_peak_share:.0%} of off-peak tests",
                    measured.outside(window),
                    normal,
                    policy.off_peak_share,
                    1,
                ),
                _available(
                    "normal_peak",
                    f"normally available {rate} reached in at least {policy.peak_share:.0%} "
                    f"of peak-hour tests ({hours})",
                    measured.within(window),
                    normal,
                    policy.peak_share,
                    1,
                ),
            ]
            headline = criteria[1].value
        else:
            criteria = [
                _available(
                    "normal_day",
                    f"normally available {rate} reached in at least {policy.day_share:.0%} "
                    "of all tests",
                    measured.measurements,
                    normal,
                    policy.day_share,
                    1,
                )
            ]
            headline = criteria[0].value
        if len(measured.measurements) < policy.min_tests:
            for criterion in criteria:
                criterion.passed = None
                criterion.deciding = []
                criterion.note = (
                    f"{len(measured.measurements)} valid tests, {policy.min_tests} needed"
                )
        verdicts.append(
            verdict(POLICY, measured, criteria, headline, {"normal_bytes_per_second": normal})
        )
    return verdicts


def _available(
    name: str,
    description: str,
    measurements: list[Measurement],
    normal: float,
    required: float,
    min_tests: int,
) -> Criterion:
    value = share(measurements, normal)
    if value is None or len(measurements) < min_tests:
        return Criterion(name, description, None, value, required, note="no tests in this window")
    passed = value >= required
    deciding = [m.record_id for m in measurements if reaches(m.bytes_per_second, normal) == passed]
    return Criterion(name, description, passed, value, required, deciding)
