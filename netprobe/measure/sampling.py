"""Reading a transfer's byte count over time: interpolation on a sampled series and the stall
rule. The one place both the throughput engine and the drive probe take them from."""

from __future__ import annotations

import bisect

from netprobe.errors import TransportError
from netprobe.results import StreamSeries


def bytes_at(series: StreamSeries, t: float) -> float:
    """Cumulative bytes of a stream at time t, linearly interpolated between samples."""
    times, counts = series.t_seconds, series.bytes
    if not times:
        return 0.0
    if t <= times[0]:
        # Before its first sample a stream is taken to have grown from 0 bytes at t = 0.
        return counts[0] * max(t, 0.0) / times[0] if times[0] > 0 else float(counts[0])
    i = bisect.bisect_left(times, t)
    if i >= len(times):
        return float(counts[-1])
    t0, t1, b0, b1 = times[i - 1], times[i], counts[i - 1], counts[i]
    return b0 + (b1 - b0) * (t - t0) / (t1 - t0) if t1 > t0 else float(b1)


class StallWatch:
    """Fails a transfer whose byte count has not grown for `stall_seconds`.

    watch = StallWatch(5.0, started_seconds=clock())
    watch.check(clock(), total_bytes)       # every sample; raises TransportError("stalled")
    """

    def __init__(self, stall_seconds: float, started_seconds: float = 0.0) -> None:
        self.stall_seconds = stall_seconds
        self._progress_at_seconds = started_seconds
        self._progress_bytes = 0

    def check(self, now_seconds: float, total_bytes: int) -> None:
        """Note the count at `now_seconds`; raise when it has been flat for too long."""
        if total_bytes > self._progress_bytes:
            self._progress_at_seconds, self._progress_bytes = now_seconds, total_bytes
        elif now_seconds - self._progress_at_seconds >= self.stall_seconds:
            what = "no data" if total_bytes == 0 else "the transfer stopped"
            raise TransportError(
                f"stalled: {what} for {self.stall_seconds:g} s (server not answering?)",
                reason="stalled",
            )
