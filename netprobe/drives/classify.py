"""Which throttle a drive applies, from what one and N connections saw (docs/method.md §5).

    none             the drive delivers (close to) the line's rate
    per_connection   each connection is capped: N connections get about N times one
    aggregate_cap    the account is capped: N connections share what one gets
    burst_then_cap   fast for the first seconds, then capped (Aliyun third-party clients)
    concurrency_cap  extra connections are refused (HTTP 403, Aliyun: 2 per app, 3 per user)
    quota            a volume quota is used up (123pan: 1 GB a day, code 5113)
    unknown          not enough evidence: one connection and no line rate to compare with

What N connections show is the more specific finding, so it wins over a burst: a token bucket
that caps the whole account (rclone's --bwlimit) also starts with a burst.
"""

from __future__ import annotations

from dataclasses import dataclass

# Thresholds are wide on purpose: a drive's rate swings by tens of percent between seconds.
BURST_FACTOR = 1.3
AT_LINE_SHARE = 0.8
NO_GAIN_FACTOR = 1.25
REFUSAL_REASONS = frozenset({"forbidden", "rate_limited", "concurrency"})


@dataclass(frozen=True)
class Evidence:
    """What the probe measured in one direction."""

    steady_bytes_per_second: float | None
    burst_bytes_per_second: float | None = None
    reason: str | None = None
    multi_connections: int = 0
    multi_bytes_per_second: float | None = None
    multi_refused: int = 0
    line_bytes_per_second: float | None = None


def classify(evidence: Evidence) -> str:
    """The throttle kind (see the module docstring) that best explains the evidence."""
    if evidence.reason == "quota":
        return "quota"
    if evidence.multi_refused > 0:
        return "concurrency_cap"
    steady = evidence.steady_bytes_per_second
    if not steady:
        return "unknown"
    line = evidence.line_bytes_per_second
    if line and steady >= AT_LINE_SHARE * line:
        return "none"
    multi = evidence.multi_bytes_per_second
    if multi is not None and evidence.multi_connections >= 2:
        gain = multi / steady
        if gain >= 1 + 0.5 * (evidence.multi_connections - 1) or (
            line and multi >= AT_LINE_SHARE * line and gain >= NO_GAIN_FACTOR
        ):
            return "per_connection"
        if gain < NO_GAIN_FACTOR:
            return "aggregate_cap"
    burst = evidence.burst_bytes_per_second
    if burst is not None and burst > BURST_FACTOR * steady:
        return "burst_then_cap"
    return "unknown"
