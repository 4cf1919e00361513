"""us-fcc: the FCC Measuring Broadband America view of a line.

Per direction: each valid test as a percentage of the advertised rate; the share of tests
above 95 %, from 80 % to 95 % (both edges included) and below 80 %; and the 80/80 consistent
speed: the 20th percentile (nearest rank, the value at rank ⌈0.2·n⌉) of the speeds measured in
the peak period, 19–23 h local time on weekdays, as a percentage of advertised. The line is
compliant when that percentile is at least 80 %, i.e. at least 80 % of peak tests reach 80 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.series import reaches, series
from netprobe.compliance.verdict import Criterion, Verdict, verdict
from netprobe.results import DIRECTIONS

POLICY = "us-fcc"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the value at rank ⌈fraction·n⌉ (at least rank 1)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(fraction * len(ordered), 9)))
    return ordered[rank - 1]


def evaluate(
    records: Iterable[dict[str, Any]], contract: Contract, config: ComplianceConfig
) -> list[Verdict]:
    """One verdict per direction."""
    policy = config.us_fcc
    records = list(records)
    verdicts = []
    for direction in DIRECTIONS:
        measured = series(records, direction, config.zone())
        advertised = contract.direction(direction).theoretical
        ratios = [m.bytes_per_second / advertised for m in measured.measurements]
        n = len(ratios)
        figures: dict[str, float | None] = {
            "share_above_95": _fraction(sum(r > 0.95 for r in ratios), n),
            "share_80_to_95": _fraction(sum(0.8 <= r <= 0.95 for r in ratios), n),
            "share_below_80": _fraction(sum(r < 0.8 for r in ratios), n),
            "median_ratio": percentile(ratios, 0.5) if ratios else None,
        }
        peak = measured.within(policy.peak)
        window = policy.peak
        description = (
            f"{policy.consistent_share:.0%}/{1 - policy.consistent_percentile:.0%} consistent "
            f"speed: the {policy.consistent_percentile:.0%} percentile of peak-period speeds "
            f"({window.start_hour:02d}–{window.end_hour:02d} h, {window.days}) reaches "
            f"{policy.consistent_share:.0%} of advertised"
        )
        threshold = policy.consistent_share * advertised
        peak_share = _fraction(sum(reaches(m.bytes_per_second, threshold) for m in peak), len(peak))
        if len(peak) < policy.min_tests:
            consistent = Criterion(
                "consistent_speed",
                description,
                None,
                None,
                policy.consistent_share,
                note=f"{len(peak)} peak-period tests, {policy.min_tests} needed",
            )
        else:
            value = percentile([m.bytes_per_second for m in peak], policy.consistent_percentile)
            passed = reaches(value, threshold)
            consistent = Criterion(
                "consistent_speed",
                description,
                passed,
                value / advertised,
                policy.consistent_share,
                [m.record_id for m in peak if reaches(m.bytes_per_second, threshold) == passed],
            )
        figures["consistent_ratio"] = consistent.value
        verdicts.append(verdict(POLICY, measured, [consistent], peak_share, figures))
    return verdicts


def _fraction(count: int, total: int) -> float | None:
    return count / total if total else None
