"""The window's rate estimator: least-squares rate of a byte count and its lump-aware precision,
on deterministic synthetic counts (smooth, lumpy, noisy, stepped)."""

from __future__ import annotations

import math
import random

import pytest

from netprobe.measure.fit import fit_rate

LUMP_BYTES = 65_000  # a 64 kB segment burst let through a shaper at once
LUMP_SECONDS = 0.27  # its period on a 2 Mbit/s uplink
LUMPY_RATE = LUMP_BYTES / LUMP_SECONDS


def ticks(window_seconds: float, start: float = 0.5) -> list[float]:
    """Sample times every 0.1 s, as the engine samples."""
    return [start + i * 0.1 for i in range(round(window_seconds / 0.1) + 1)]


def staircase(times: list[float], phase_seconds: float) -> list[float]:
    return [LUMP_BYTES * math.floor((t + phase_seconds) / LUMP_SECONDS) for t in times]


def test_a_smooth_count_is_known_exactly():
    times = ticks(1.0)
    fit = fit_rate(times, [2e6 * t for t in times])
    assert fit.bytes_per_second == pytest.approx(2e6)
    assert fit.uncertainty < 1e-9


@pytest.mark.parametrize("window_seconds", [4.0, 6.0])
def test_lumps_at_the_window_ends_do_not_move_the_rate(window_seconds):
    # Every phase of the lumps against the window: the end-point difference is off by up to a
    # lump over the window, the least-squares rate by a fraction of it.
    slope_errors, end_point_errors = [], []
    for k in range(40):
        times = ticks(window_seconds)
        counts = staircase(times, phase_seconds=k * LUMP_SECONDS / 40)
        fit = fit_rate(times, counts)
        slope_errors.append(abs(fit.bytes_per_second / LUMPY_RATE - 1))
        end_point = (counts[-1] - counts[0]) / (times[-1] - times[0])
        end_point_errors.append(abs(end_point / LUMPY_RATE - 1))
        assert slope_errors[-1] <= fit.uncertainty  # the precision it claims holds
    assert max(end_point_errors) > 0.03
    assert max(slope_errors) < 0.01
    assert max(slope_errors) < max(end_point_errors) / 5


def test_a_slow_wander_is_not_taken_for_independent_samples():
    # The same spread of the count around its line, once as a wander over the whole window (a
    # rate that sags and recovers) and once as independent noise: the wander is known less well.
    rate = 240_000.0
    spread = LUMP_BYTES / math.sqrt(12)
    times = ticks(4.0)
    wander = [rate * t + spread * math.sqrt(2) * math.sin(2 * math.pi * t / 4.0) for t in times]
    rng = random.Random(7)
    noise = [rate * t + rng.gauss(0, spread) for t in times]
    assert fit_rate(times, wander).uncertainty > 2 * fit_rate(times, noise).uncertainty


def test_the_precision_of_a_lumpy_count_grows_with_the_window():
    short, long = ticks(4.0), ticks(8.0)
    short_fit = fit_rate(short, staircase(short, 0.0))
    long_fit = fit_rate(long, staircase(long, 0.0))
    assert long_fit.uncertainty < short_fit.uncertainty / 2


def test_a_rate_step_inside_the_window_is_not_precise():
    # 1 MB/s for 2 s, then 2 MB/s: the mean is 1.5 MB/s, but no single rate fits.
    times = ticks(4.0, start=0.0)
    counts = [1e6 * min(t, 2.0) + 2e6 * max(0.0, t - 2.0) for t in times]
    fit = fit_rate(times, counts)
    assert fit.bytes_per_second == pytest.approx(1.5e6, rel=0.01)
    assert fit.uncertainty > 0.1


def test_independent_noise_averages_out():
    rng = random.Random(3)
    times = ticks(2.0)
    fit = fit_rate(times, [1e6 * t + rng.gauss(0, 5_000) for t in times])
    assert fit.bytes_per_second == pytest.approx(1e6, rel=fit.uncertainty)
    assert fit.uncertainty < 0.02


def test_too_few_samples_give_no_precision():
    assert math.isinf(fit_rate([0.0, 0.1, 0.2], [0, 100, 200]).uncertainty)
    assert math.isinf(fit_rate([1.0], [100]).uncertainty)
    assert math.isinf(fit_rate(ticks(1.0), [0.0] * 11).uncertainty)  # nothing moved
