"""The throughput engine: parallel streams, sampling, warm-up, windowing and RMBT aggregation.

The engine knows nothing of protocols. A protocol module hands it a `Transfer` that moves bytes
on one stream and counts them; the engine decides how many streams, when the warm-up is over,
when to stop, and turns the per-stream series into one figure (METHOD.md §2):

    result = await measure_direction(transfer, EngineOptions(duration_seconds=5), sink)

Aggregation is RMBT's: with t* the earliest last-sample time over all streams, each stream's
bytes are interpolated at the window start and at t*, and rate = Σ bytes / (t* - start).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from netprobe import __version__
from netprobe.errors import BudgetExceeded, MeasurementError, TransportError
from netprobe.events import Event, NullSink, Sink
from netprobe.results import Direction, DirectionResult, Method, StreamSeries
from netprobe.units import format_size

ENGINE = f"netprobe-engine/{__version__}"
_RATE_SPAN_SECONDS = 0.5
_FINISH_TIMEOUT_SECONDS = 10.0


class ByteCounter:
    """Payload bytes moved by one stream; written by the stream, read by the sampler.

    A stream may set `source` to the kernel's count (TCP_INFO): for an upload, what the peer
    acknowledged rather than what sits in our socket buffer; for a download, what arrived even
    if not yet read. `read()` prefers it and falls back to the stream's own count.
    """

    __slots__ = ("bytes", "source")

    def __init__(self) -> None:
        self.bytes = 0
        self.source: Callable[[], int | None] | None = None

    def add(self, n: int) -> None:
        self.bytes += n

    def read(self) -> int:
        kernel = self.source() if self.source is not None else None
        return self.bytes if kernel is None else kernel


class Transfer(Protocol):
    """One direction against one server; `stream()` is run once per parallel stream."""

    direction: Direction
    protocol: str

    async def stream(
        self, index: int, counter: ByteCounter, stop: asyncio.Event
    ) -> StreamSeries | None:
        """Move bytes until `stop` is set, counting them; return the receiver's series if any."""
        ...


@dataclass
class EngineOptions:
    """How a direction is measured; defaults suit 1–1000 Mbit/s lines."""

    streams: int | None = None
    streams_min: int = 4
    streams_max: int = 16
    duration_seconds: float | None = None
    max_bytes: int = 3_000_000_000
    time_limit_seconds: float = 30.0
    sample_interval_seconds: float = 0.1
    warmup_min_seconds: float = 1.0
    warmup_max_seconds: float = 8.0
    warmup_tolerance: float = 0.05
    stream_gain: float = 0.10
    adaptive_min_seconds: float = 3.0
    adaptive_max_seconds: float = 10.0
    adaptive_tolerance: float = 0.01
    stall_seconds: float = 5.0

    def method(self, protocol: str, streams: int, measured_at: str) -> Method:
        window = (
            f"fixed {self.duration_seconds:g} s"
            if self.duration_seconds
            else f"adaptive: {self.adaptive_min_seconds:g}-{self.adaptive_max_seconds:g} s, "
            f"stop when the estimate moved < {self.adaptive_tolerance:.0%} over 1 s"
        )
        return Method(
            protocol=protocol,
            engine=ENGINE,
            streams=streams,
            warmup_rule=(
                f"three {_RATE_SPAN_SECONDS:g} s rates within {self.warmup_tolerance:.0%}, "
                f"min {self.warmup_min_seconds:g} s, max {self.warmup_max_seconds:g} s"
            ),
            window_rule=window + f"; budget {format_size(self.max_bytes)}",
            aggregate="rmbt",
            measured_at=measured_at,
        )


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


def rmbt_window(series: list[StreamSeries], start: float) -> tuple[float, float, float]:
    """(window bytes, window seconds, bytes before start) aggregated the RMBT way."""
    sampled = [s for s in series if s.t_seconds]
    if not sampled:
        return 0.0, 0.0, 0.0
    t_star = min(s.t_seconds[-1] for s in sampled)
    before = sum(bytes_at(s, start) for s in sampled)
    if t_star <= start:
        return 0.0, 0.0, before
    return sum(bytes_at(s, t_star) for s in sampled) - before, t_star - start, before


class _Run:
    """State of one direction being measured."""

    def __init__(self, transfer: Transfer, options: EngineOptions, sink: Sink) -> None:
        self.transfer = transfer
        self.options = options
        self.sink = sink
        self.stop = asyncio.Event()
        self.counters: list[ByteCounter] = []
        self.series: list[StreamSeries] = []
        self.tasks: list[asyncio.Task[StreamSeries | None]] = []
        self.ticks: list[float] = []
        self.totals: list[int] = []
        self.start = 0.0
        self.cpu_start = time.process_time()

    def add_streams(self, n: int) -> None:
        for _ in range(n):
            index = len(self.counters)
            counter = ByteCounter()
            self.counters.append(counter)
            self.series.append(StreamSeries(stream=index))
            self.tasks.append(asyncio.create_task(self.transfer.stream(index, counter, self.stop)))
        self.emit("streams", streams=len(self.tasks))

    def emit(self, kind: str, **fields: object) -> None:
        self.sink.emit(Event(kind=kind, direction=self.transfer.direction, **fields))  # type: ignore[arg-type]

    def sample(self, now: float) -> None:
        total = 0
        for counter, series in zip(self.counters, self.series, strict=True):
            count = counter.read()
            series.t_seconds.append(now)
            series.bytes.append(count)
            total += count
        self.ticks.append(now)
        self.totals.append(total)

    def total_at(self, t: float) -> float:
        i = bisect.bisect_right(self.ticks, t)
        return float(self.totals[i - 1]) if i else 0.0

    def rate(self, end: float, span: float = _RATE_SPAN_SECONDS) -> float:
        return (self.total_at(end) - self.total_at(end - span)) / span

    def stable(self, now: float, tolerance: float) -> bool:
        rates = [self.rate(now - k * _RATE_SPAN_SECONDS) for k in range(3)]
        low, high = min(rates), max(rates)
        return low > 0 and high / low - 1 <= tolerance

    def check_streams(self) -> None:
        """A stream that failed fails the test; which one broke first is the reason."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def cancel(self) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def measure_direction(
    transfer: Transfer,
    options: EngineOptions,
    sink: Sink | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DirectionResult:
    """Measure one direction; a failure comes back as a failed result, never as a zero rate."""
    run = _Run(transfer, options, sink or NullSink())
    fixed_streams = options.streams
    method = options.method(transfer.protocol, fixed_streams or options.streams_min, "sender")
    try:
        return await _measure(run, clock)
    except MeasurementError as exc:
        run.emit("error", message=str(exc))
        failed = DirectionResult.failed(transfer.direction, exc.reason, str(exc), method)
        # No rate, but the bytes crossed the line all the same: the data budget counts them.
        failed.total_bytes = run.totals[-1] if run.totals else 0
        return failed
    finally:
        await run.cancel()


async def _measure(run: _Run, clock: Callable[[], float]) -> DirectionResult:
    options = run.options
    interval = options.sample_interval_seconds
    run.start = clock()
    run.emit("started")
    run.add_streams(options.streams or options.streams_min)
    adaptive_streams = options.streams is None
    rate_before_add: float | None = None
    added_at = 0.0
    warmup_end: float | None = None
    last_progress = (0.0, 0)
    stop_reason = "window"
    tick = 0
    while True:
        tick += 1
        await asyncio.sleep(max(0.0, run.start + tick * interval - clock()))
        now = clock() - run.start
        run.sample(now)
        run.check_streams()
        total = run.totals[-1]
        if total > last_progress[1]:
            last_progress = (now, total)
        elif now - last_progress[0] >= options.stall_seconds:
            what = "no data" if total == 0 else "the transfer stopped"
            raise TransportError(
                f"stalled: {what} for {options.stall_seconds:g} s (server not answering?)",
                reason="stalled",
            )
        run.emit(
            "sample",
            t_seconds=now,
            bytes_per_second=run.rate(now),
            total_bytes=total,
            streams=len(run.tasks),
        )

        if warmup_end is None:
            settled = now - added_at >= 3 * _RATE_SPAN_SECONDS
            if now >= options.warmup_max_seconds:
                warmup_end = now
            elif (
                now >= options.warmup_min_seconds
                and settled
                and run.stable(now, options.warmup_tolerance)
            ):
                rate = run.rate(now, 3 * _RATE_SPAN_SECONDS)
                gained = rate_before_add is None or rate > rate_before_add * (
                    1 + options.stream_gain
                )
                if adaptive_streams and gained and len(run.tasks) < options.streams_max:
                    rate_before_add, added_at = rate, now
                    run.add_streams(min(len(run.tasks), options.streams_max - len(run.tasks)))
                else:
                    warmup_end = now
            if warmup_end is not None:
                run.emit(
                    "warmup_done",
                    t_seconds=now,
                    bytes_per_second=run.rate(now),
                    total_bytes=total,
                    streams=len(run.tasks),
                )
        else:
            window = now - warmup_end
            if options.duration_seconds is not None:
                if window >= options.duration_seconds - interval / 2:
                    break
            elif window >= options.adaptive_max_seconds or (
                window >= options.adaptive_min_seconds and _estimate_settled(run, warmup_end, now)
            ):
                break
        if total >= options.max_bytes:
            if warmup_end is None or now - warmup_end < interval:
                raise BudgetExceeded(
                    f"the byte budget of {format_size(options.max_bytes)} ran out during warm-up; "
                    "raise --max-bytes for a valid measurement"
                )
            stop_reason = "budget"
            break
        if now >= options.time_limit_seconds:
            if warmup_end is None:
                raise MeasurementError("time limit reached during warm-up", reason="timeout")
            stop_reason = "time_limit"
            break

    assert warmup_end is not None
    # Stopping can take seconds (an upload's queued bytes drain, the server sends its count):
    # say so, so a progress line does not look frozen.
    run.emit("finishing", t_seconds=now, detail=_FINISH_TIMEOUT_SECONDS)
    receiver = await _finish(run)
    series = receiver or run.series
    window_bytes, window_seconds, warmup_bytes = rmbt_window(series, warmup_end)
    if window_seconds <= 0 or window_bytes <= 0:
        raise MeasurementError("no bytes in the measurement window", reason="empty_window")
    # A download is counted where it arrives; an upload is the server's report when there is
    # one, else what the peer's TCP acknowledged (TCP_INFO), else what was written.
    measured_at = "receiver" if receiver or run.transfer.direction == "download" else "sender"
    method = options.method(run.transfer.protocol, len(run.tasks), measured_at)
    if stop_reason != "window":
        method.window_rule += f"; stopped by {stop_reason}"
    result = DirectionResult(
        direction=run.transfer.direction,
        ok=True,
        bytes_per_second=window_bytes / window_seconds,
        bytes=round(window_bytes),
        warmup_bytes=round(warmup_bytes),
        warmup_seconds=warmup_end,
        window_seconds=window_seconds,
        duration_seconds=clock() - run.start,
        total_bytes=round(sum(s.bytes[-1] for s in series if s.bytes)),
        streams=len(run.tasks),
        samples=series,
        method=method,
        cpu_seconds=time.process_time() - run.cpu_start,
    )
    run.emit(
        "finished",
        t_seconds=result.duration_seconds,
        bytes_per_second=result.bytes_per_second,
        total_bytes=result.total_bytes,
        streams=result.streams,
        detail=result,
    )
    return result


def _estimate_settled(run: _Run, warmup_end: float, now: float) -> bool:
    """True when the window's running estimate moved less than the tolerance over the last second."""
    start_bytes = run.total_at(warmup_end)

    def estimate(t: float) -> float:
        return (run.total_at(t) - start_bytes) / (t - warmup_end)

    current = estimate(now)
    past = [estimate(t) for t in run.ticks if now - 1.0 <= t < now and t - warmup_end > 0.5]
    return (
        bool(past)
        and current > 0
        and all(abs(p - current) / current <= run.options.adaptive_tolerance for p in past)
    )


async def _finish(run: _Run) -> list[StreamSeries] | None:
    """Stop the streams; return the receiver's series when every stream reported one."""
    run.stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*run.tasks, return_exceptions=True), _FINISH_TIMEOUT_SECONDS
        )
    reports: list[StreamSeries] = []
    for task in run.tasks:
        if not task.done() or task.cancelled():
            return None
        outcome = task.exception() or task.result()
        if isinstance(outcome, MeasurementError):
            raise outcome
        if not isinstance(outcome, StreamSeries):
            return None
        reports.append(outcome)
    return reports
