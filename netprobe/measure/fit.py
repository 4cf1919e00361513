"""The rate of a growing byte count and how well it is known (docs/method.md §2).

The rate is the least-squares slope of the count over time, not the difference of its two ends:
bytes arrive in lumps (a 64 kB segment burst let through a shaper at once, ACK trains, loss
recovery), and an end that falls just before or just after a lump moves an end-point figure by a
whole lump, while the slope weighs every sample.

    fit = fit_rate(times_seconds, counts_bytes)
    fit.bytes_per_second, fit.uncertainty     # uncertainty 0.01: known within 1 %
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Twice the standard error (95 % of normal errors), doubled again: a few seconds of samples
# under-estimate how long lumps keep the count on one side of the line. Replayed over 272
# windows of two 20 s recordings of a 10 Mbit/s download (tests/lab.py htb link), stopping at
# 1 % with 2 standard errors left 30 figures outside 1 % of the recording's rate, with 4 one.
STANDARD_ERRORS = 4.0
# Fewer samples than this say nothing about how lumpy the count is.
MIN_SAMPLES = 5


@dataclass(frozen=True)
class RateFit:
    """A count's rate and its relative uncertainty (infinite when it cannot be told)."""

    bytes_per_second: float
    uncertainty: float


def fit_rate(times_seconds: Sequence[float], counts_bytes: Sequence[float]) -> RateFit:
    """The least-squares rate of `counts_bytes` over `times_seconds`, and how well it is known.

    The uncertainty is `STANDARD_ERRORS` standard errors of the slope over the slope. The
    standard error allows for lumps: neighbouring samples that sit on the same side of the line
    count as one (`_correlated_samples`), so a staircase is not mistaken for many independent
    measurements.
    """
    n = len(times_seconds)
    if n < 2:
        return RateFit(0.0, math.inf)
    mean_t = sum(times_seconds) / n
    mean_b = sum(counts_bytes) / n
    sxx = sum((t - mean_t) ** 2 for t in times_seconds)
    if sxx <= 0:
        return RateFit(0.0, math.inf)
    slope = (
        sum((t - mean_t) * (b - mean_b) for t, b in zip(times_seconds, counts_bytes, strict=True))
        / sxx
    )
    if n < MIN_SAMPLES or slope <= 0:
        return RateFit(slope, math.inf)
    residuals = [
        b - mean_b - slope * (t - mean_t) for t, b in zip(times_seconds, counts_bytes, strict=True)
    ]
    variance = sum(e * e for e in residuals) / (n - 2)
    standard_error = math.sqrt(variance * _correlated_samples(residuals) / sxx)
    return RateFit(slope, STANDARD_ERRORS * standard_error / slope)


def _correlated_samples(residuals: Sequence[float]) -> float:
    """How many samples in a row move together: 1 for independent noise, about a lump's length
    in samples for a staircase. One plus twice the residuals' autocorrelations, summed up to the
    first that is not positive; at most half the samples (a trend rather than lumps)."""
    n = len(residuals)
    energy = sum(e * e for e in residuals)
    if energy <= 0:
        return 1.0
    samples = 1.0
    for lag in range(1, n // 2):
        rho = sum(residuals[i] * residuals[i + lag] for i in range(n - lag)) / energy
        if rho <= 0:
            break
        samples += 2 * rho
    return min(samples, n / 2)
