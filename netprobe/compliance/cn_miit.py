"""cn-miit: does the line reach the contracted theoretical rate (MIIT 524, YD/T 2400)?

Per direction, the share of valid tests reaching `reach_share` (X) of the contracted rate,
over all tests and over peak-hour tests; each share must be at least `required_share`. The
regulation states no figure for either: both are policy (`compliance.cn_miit`), defaulting to
the commonly quoted 90 % / 90 %.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.series import Measurement, reaches, series, share
from netprobe.compliance.verdict import Criterion, Verdict, verdict
from netprobe.i18n import _
from netprobe.results import DIRECTIONS
from netprobe.units import format_rate

POLICY = "cn-miit"


def evaluate(
    records: Iterable[dict[str, Any]], contract: Contract, config: ComplianceConfig
) -> list[Verdict]:
    """One verdict per direction."""
    policy = config.cn_miit
    records = list(records)
    verdicts = []
    for direction in DIRECTIONS:
        measured = series(records, direction, config.zone())
        threshold = policy.reach_share * contract.direction(direction).theoretical
        target = _("{share:.0%} of the contracted rate {rate}").format(
            share=policy.reach_share, rate=format_rate(contract.direction(direction).theoretical)
        )
        overall = _reach(
            "reach_overall",
            _("at least {share:.0%} of valid tests reach {target}").format(
                share=policy.required_share, target=target
            ),
            measured.measurements,
            threshold,
            policy.required_share,
            policy.min_tests,
        )
        window = policy.peak
        peak = _reach(
            "reach_peak",
            _(
                "at least {share:.0%} of valid tests in peak hours {start:02d}–{end:02d} h "
                "reach {target}"
            ).format(
                share=policy.required_share,
                start=window.start_hour,
                end=window.end_hour,
                target=target,
            ),
            measured.within(window),
            threshold,
            policy.required_share,
            1,
        )
        verdicts.append(
            verdict(
                POLICY,
                measured,
                [overall, peak],
                overall.value,
                {"threshold_bytes_per_second": threshold, "peak_share": peak.value},
            )
        )
    return verdicts


def _reach(
    name: str,
    description: str,
    measurements: list[Measurement],
    threshold: float,
    required: float,
    min_tests: int,
) -> Criterion:
    value = share(measurements, threshold)
    if value is None or len(measurements) < min_tests:
        return Criterion(
            name,
            description,
            None,
            value,
            required,
            note=_("{count} valid tests, {needed} needed").format(
                count=len(measurements), needed=min_tests
            ),
        )
    passed = value >= required
    deciding = [
        m.record_id for m in measurements if reaches(m.bytes_per_second, threshold) == passed
    ]
    return Criterion(name, description, passed, value, required, deciding)
