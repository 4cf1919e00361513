"""au-accc: the ACCC's "underperforming service" flag (Measuring Broadband Australia).

A service is underperforming when it rarely reaches 75 % of the plan's download speed in the
busy hours, 19–23 h local time every day. "Rarely" has no published number: it is policy
(`compliance.au_accc.rarely_share`), by default fewer than 20 % of busy-hour tests, which is
the same as an 80th-percentile busy-hour speed below 75 % of plan. Only download is judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.series import reaches, series, share
from netprobe.compliance.verdict import Criterion, Verdict, verdict
from netprobe.units import format_rate

POLICY = "au-accc"


def evaluate(
    records: Iterable[dict[str, Any]], contract: Contract, config: ComplianceConfig
) -> list[Verdict]:
    """One verdict, for download."""
    policy = config.au_accc
    measured = series(records, "download", config.zone())
    plan = contract.download.theoretical
    threshold = policy.plan_share * plan
    busy = measured.within(policy.busy)
    window = policy.busy
    description = (
        f"{policy.plan_share:.0%} of the plan's {format_rate(plan)} reached in at least "
        f"{policy.rarely_share:.0%} of busy-hour tests ({window.start_hour:02d}–"
        f"{window.end_hour:02d} h)"
    )
    value = share(busy, threshold)
    if value is None or len(busy) < policy.min_tests:
        criterion = Criterion(
            "busy_hours",
            description,
            None,
            value,
            policy.rarely_share,
            note=f"{len(busy)} busy-hour tests, {policy.min_tests} needed",
        )
    else:
        passed = value >= policy.rarely_share
        criterion = Criterion(
            "busy_hours",
            description,
            passed,
            value,
            policy.rarely_share,
            [m.record_id for m in busy if reaches(m.bytes_per_second, threshold) == passed],
        )
    return [verdict(POLICY, measured, [criterion], value)]
