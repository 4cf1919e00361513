"""The engine: RMBT aggregation, warm-up exclusion, stops, and failures kept as failures."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from netprobe.errors import TransportError
from netprobe.events import Recorder
from netprobe.measure.engine import (
    ByteCounter,
    EngineOptions,
    bytes_at,
    measure_direction,
    rmbt_window,
)
from netprobe.results import StreamSeries


def test_bytes_are_interpolated_between_samples():
    series = StreamSeries(0, t_seconds=[1.0, 2.0, 3.0], bytes=[100, 300, 300])
    assert bytes_at(series, 1.5) == 200
    assert bytes_at(series, 0.5) == 50  # grown from 0 at t = 0
    assert bytes_at(series, 9.0) == 300


def test_rmbt_window_stops_at_the_earliest_last_sample():
    # Stream a runs at 100 B/s until t=4, stream b at 50 B/s until t=3: t* = 3.
    a = StreamSeries(0, t_seconds=[0.0, 1.0, 2.0, 3.0, 4.0], bytes=[0, 100, 200, 300, 400])
    b = StreamSeries(1, t_seconds=[0.0, 1.0, 2.0, 3.0], bytes=[0, 50, 100, 150])
    window_bytes, window_seconds, before = rmbt_window([a, b], start=1.0)
    assert (window_bytes, window_seconds, before) == (300.0, 2.0, 150.0)  # 150 B/s over [1, 3]


class ClockedTransfer:
    """Moves bytes as a function of time: `rate(t)` bytes/s per stream, no real traffic."""

    protocol = "synthetic"

    def __init__(self, rate, direction="download", fail_after: float | None = None):
        self.rate = rate
        self.direction = direction
        self.fail_after = fail_after
        self.start = time.monotonic()

    def bytes_until(self, t: float) -> int:
        step = 0.01
        return int(sum(self.rate(i * step) * step for i in range(int(t / step))))

    async def stream(self, index, counter: ByteCounter, stop: asyncio.Event):
        counter.source = lambda: self.bytes_until(time.monotonic() - self.start)
        if self.fail_after is not None:
            await asyncio.sleep(self.fail_after)
            raise TransportError("connection reset by the server", reason="reset")
        await stop.wait()
        return None


async def test_slow_start_is_excluded_from_the_figure():
    # 1 MB/s per stream for the first second (slow start), then 4 MB/s steady.
    transfer = ClockedTransfer(lambda t: 1e6 if t < 1.0 else 4e6)
    sink = Recorder()
    result = await measure_direction(
        transfer, EngineOptions(streams=2, duration_seconds=1.5, warmup_min_seconds=1.2), sink
    )
    assert result.ok
    assert result.bytes_per_second == pytest.approx(8e6, rel=0.03)
    assert result.warmup_seconds >= 1.2
    assert result.warmup_bytes > 0
    assert result.streams == 2 and len(result.samples) == 2
    kinds = [e.kind for e in sink.events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.index("warmup_done") < kinds.index("finished")


async def test_streams_are_added_while_the_aggregate_still_grows():
    transfer = ClockedTransfer(lambda t: 1e6)  # each stream adds 1 MB/s: more streams help
    result = await measure_direction(
        transfer, EngineOptions(streams_min=2, streams_max=8, duration_seconds=0.5)
    )
    assert result.ok and result.streams == 8


async def test_a_silent_server_is_a_stall_not_a_zero_rate():
    transfer = ClockedTransfer(lambda t: 0.0)
    result = await measure_direction(transfer, EngineOptions(streams=2, stall_seconds=0.5))
    assert not result.ok
    assert result.reason == "stalled" and result.bytes_per_second is None


async def test_a_reset_stream_fails_the_test_with_its_reason():
    transfer = ClockedTransfer(lambda t: 1e6, fail_after=0.3)
    result = await measure_direction(transfer, EngineOptions(streams=2))
    assert not result.ok
    assert result.reason == "reset" and "reset" in (result.error or "")


async def test_the_byte_budget_bounds_the_test():
    transfer = ClockedTransfer(lambda t: 5e6)
    result = await measure_direction(
        transfer,
        EngineOptions(
            streams=2, max_bytes=30_000_000, warmup_min_seconds=1.0, adaptive_min_seconds=5.0
        ),
    )
    # 10 MB/s: warm-up ends after about 1 s, the budget stops it at 30 MB, not the window.
    assert result.ok
    assert "ended by budget" in result.method.window_rule
    assert result.total_bytes <= 32_000_000


async def test_a_budget_spent_in_warm_up_is_a_clear_failure():
    transfer = ClockedTransfer(lambda t: 5e6)
    result = await measure_direction(transfer, EngineOptions(streams=2, max_bytes=1_000_000))
    assert not result.ok and result.reason == "budget"
    assert "--max-bytes" in (result.error or "")
    assert result.total_bytes >= 1_000_000  # what the failed attempt moved is still reported


async def test_a_ramp_never_lands_in_a_fixed_window():
    # 1.5 s of linear ramp, then 4 MB/s per stream: a 2 s window must read the steady rate.
    transfer = ClockedTransfer(lambda t: 4e6 * min(1.0, (t + 0.01) / 1.5))
    result = await measure_direction(transfer, EngineOptions(streams=2, duration_seconds=2))
    assert result.ok
    assert result.bytes_per_second == pytest.approx(8e6, rel=0.02)
    assert "fixed 2 s" in result.method.window_rule


async def test_a_steady_line_stops_once_the_figure_holds():
    # The old rule spent at least 1.5 s of warm-up and a 3 s window on any line.
    transfer = ClockedTransfer(lambda t: 1e6)
    transfer.bytes_until = lambda t: int(1e6 * t)  # exactly steady, no 10 ms steps
    result = await measure_direction(transfer, EngineOptions(streams=2))
    assert result.ok
    assert result.bytes_per_second == pytest.approx(2e6, rel=0.01)
    assert result.total_bytes < 0.6 * 2e6 * (1.5 + 3.0)
    assert "ended by precision" in result.method.window_rule, result.method.window_rule


async def test_a_multi_gigabit_line_fits_the_default_budget():
    # 4 streams at 1 GB/s each with CPU-like noise that never looks steady: the warm-up ends by
    # time once 40 % of the 3 GB budget is gone and the window gets the rest.
    transfer = ClockedTransfer(lambda t: 1e9 * (1 + 0.3 * math.sin(t * 40)))
    result = await measure_direction(transfer, EngineOptions())
    assert result.ok, result.error
    assert "of the budget spent" in result.method.warmup_rule
    assert "ended by budget" in result.method.window_rule
    assert result.bytes_per_second == pytest.approx(4e9, rel=0.2)


async def test_no_streams_are_added_while_a_queue_stands():
    class Queued(ClockedTransfer):
        async def stream(self, index, counter, stop):
            counter.rtts = lambda: (0.050, 0.010)  # 40 ms of queue on a 10 ms path: full
            return await super().stream(index, counter, stop)

    result = await measure_direction(
        Queued(lambda t: 1e6), EngineOptions(streams_min=2, duration_seconds=0.5)
    )
    assert result.ok and result.streams == 2


async def test_a_lumpy_line_reads_its_long_run_rate():
    # Each stream's bytes arrive as 32.5 kB lumps every 0.27 s (a shaper letting a 64 kB burst
    # of segments through at once, as on a 2 Mbit/s uplink): whatever the phase of the lumps
    # at the window's ends, the figure is the long-run rate within 0.5 % (the difference of
    # the two end counts was off by 1-1.5 % here).
    lump_bytes, period_seconds = 32_500, 0.27
    transfer = ClockedTransfer(lambda t: 0.0)
    transfer.bytes_until = lambda t: lump_bytes * math.floor(t / period_seconds)
    result = await measure_direction(
        transfer,
        EngineOptions(
            streams=2, span_min_bytes=100_000, warmup_max_seconds=2.0, slow_line_max_seconds=6.0
        ),
    )
    assert result.ok, result.error
    assert result.bytes_per_second == pytest.approx(2 * lump_bytes / period_seconds, rel=0.005)
    assert result.window_seconds < 6.5  # the limit, plus at most a late sample


@pytest.mark.parametrize(("slow_line_window_bytes", "window_seconds"), [(10**9, 3.0), (1, 1.5)])
async def test_a_slow_lumpy_window_runs_on_until_it_holds_enough(
    slow_line_window_bytes, window_seconds
):
    # 100 kB lumps every 0.5 s are never known within 1 % in 3 s: a window that holds fewer
    # than `slow_line_window_bytes` at the usual limit (here 1.5 s) runs on to the slow line's.
    transfer = ClockedTransfer(lambda t: 0.0)
    transfer.bytes_until = lambda t: 100_000 * math.floor(t / 0.5)
    options = EngineOptions(
        streams=1,
        span_min_bytes=50_000,
        warmup_max_seconds=1.0,
        adaptive_max_seconds=1.5,
        slow_line_max_seconds=3.0,
        slow_line_window_bytes=slow_line_window_bytes,
    )
    result = await measure_direction(transfer, options)
    assert result.ok, result.error
    assert result.window_seconds == pytest.approx(window_seconds, abs=0.25)
    limit = "of a slow line" if window_seconds == 3.0 else "the 1.5 s limit"
    assert limit in result.method.window_rule, result.method.window_rule


@pytest.mark.parametrize(
    ("lumpy", "ended_by"), [(False, "agreement of three 0.27 s rates"), (True, "the 3 s limit")]
)
async def test_only_a_lumpy_slow_line_needs_long_spans(lumpy, ended_by):
    # 240 kB/s (a 2 Mbit/s line) over two streams. Arriving smoothly (a modem serializing
    # frames), rates over the time 64 kB take agree at once, and the whole test costs less than
    # one lumpy span; in 32 kB lumps every 0.27 s (a shaper passing GSO bursts whole), spans
    # hold 512 kB (capped at 2 s), and lumps falling 7 or 8 to a span never let them agree.
    transfer = ClockedTransfer(lambda t: 0.0)
    if lumpy:
        transfer.bytes_until = lambda t: 32_400 * math.floor(t / 0.27)
    else:
        transfer.bytes_until = lambda t: int(120_000 * t)
    options = EngineOptions(streams=2, warmup_max_seconds=3.0, slow_line_max_seconds=6.0)
    result = await measure_direction(transfer, options)
    assert result.ok, result.error
    assert result.bytes_per_second == pytest.approx(240_000, rel=0.01)
    assert f"ended by {ended_by}" in result.method.warmup_rule, result.method.warmup_rule
    if not lumpy:
        assert result.warmup_bytes + result.bytes < 512_000
