"""Where a drive's burst ends and its steady rate begins, found from the sampled byte count.

Free tiers serve the first seconds or megabytes fast, then hold a low rate; how long and how
much differs by drive and by day, so no fixed window can split the two. The split is a change
point in the mean rate: of all times τ, the one where "one rate before, another after" explains
the samples best (least squares). On a cumulative curve B(t) that is the τ maximising
B(τ)²/τ + (B(end) − B(τ))²/(end − τ). A split counts only when the rate before it is clearly
higher; the search repeats after it, so a burst that steps down twice ends at its last step.

    state = find_steady(timeline)           # timeline: StreamSeries from the first byte
    state.bytes_per_second, state.held_seconds, state.burst_seconds, state.burst_bytes
"""

from __future__ import annotations

from dataclasses import dataclass

from netprobe.drives.classify import BURST_FACTOR
from netprobe.measure.sampling import bytes_at
from netprobe.results import StreamSeries

# The shortest stretch that counts as a burst, and the shortest steady stretch that can show
# one ended: shorter ones are a hiccup of the reader or the network.
MIN_BURST_SECONDS = 0.5
MIN_STEADY_SECONDS = 1.0
# Left out after the change point: the sample that straddles it, and bytes of the burst the
# reader had not yet taken from the socket when it ended.
GUARD_SECONDS = 0.5


@dataclass(frozen=True)
class SteadyState:
    """The steady rate and, when there was one, the burst before it (times from the first byte)."""

    bytes_per_second: float
    start_seconds: float
    held_seconds: float
    burst_seconds: float | None = None
    burst_bytes: float | None = None
    burst_bytes_per_second: float | None = None


def find_steady(timeline: StreamSeries) -> SteadyState | None:
    """The steady state of a transfer; None before it has any bytes or time."""
    times = [0.0, *timeline.t_seconds]
    counts = [0, *timeline.bytes]
    end, total = times[-1], counts[-1]
    if end <= 0 or total <= 0:
        return None
    start = origin = 0
    while (split := _best_split(times, counts, origin)) is not None:
        start = split
        # The next step down is looked for past the guard: the straddling sample would
        # otherwise pass for one.
        origin = next(
            i
            for i, t in enumerate(times)
            if t >= times[split] + GUARD_SECONDS or i == len(times) - 1
        )
    if start == 0:
        return SteadyState(bytes_per_second=total / end, start_seconds=0.0, held_seconds=end)
    change = times[start]
    measured_from = min(change + GUARD_SECONDS, (change + end) / 2)
    steady = (total - bytes_at(timeline, measured_from)) / (end - measured_from)
    burst_seconds = _burst_end(timeline, change, steady, end, total)
    burst_bytes = bytes_at(timeline, burst_seconds)
    return SteadyState(
        bytes_per_second=steady,
        start_seconds=change,
        held_seconds=end - change,
        burst_seconds=burst_seconds,
        burst_bytes=burst_bytes,
        burst_bytes_per_second=burst_bytes / burst_seconds,
    )


def _best_split(times: list[float], counts: list[int], start: int) -> int | None:
    """The sample after `start` where a faster rate before gives way to a slower one, if any."""
    t0, b0 = times[start], counts[start]
    end, total = times[-1] - t0, counts[-1] - b0
    best: tuple[float, int] | None = None
    for i in range(start + 1, len(times) - 1):
        before_seconds, before_bytes = times[i] - t0, counts[i] - b0
        after_seconds, after_bytes = end - before_seconds, total - before_bytes
        if before_seconds < MIN_BURST_SECONDS:
            continue
        if after_seconds < MIN_STEADY_SECONDS:
            break
        fit = before_bytes**2 / before_seconds + after_bytes**2 / after_seconds
        if best is None or fit > best[0]:
            best = (fit, i)
    if best is None:
        return None
    i = best[1]
    before_rate = (counts[i] - b0) / (times[i] - t0)
    after_rate = (counts[-1] - counts[i]) / (times[-1] - times[i])
    return i if before_rate > BURST_FACTOR * after_rate else None


def _burst_end(
    timeline: StreamSeries, change: float, steady: float, end: float, total: int
) -> float:
    """When the burst ended: where the steady line, drawn back from the end, meets the burst's
    own average line (a sample only brackets it to within its interval)."""
    inside = max(change - GUARD_SECONDS, change / 2)
    burst_rate = bytes_at(timeline, inside) / inside
    if burst_rate <= steady:
        return change
    # burst_rate * t = total - steady * (end - t)
    crossing = (total - steady * end) / (burst_rate - steady)
    return min(max(crossing, inside), end)
