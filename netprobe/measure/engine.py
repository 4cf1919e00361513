"""The throughput engine: parallel streams, sampling, warm-up, windowing and RMBT aggregation.

The engine knows nothing of protocols. A protocol module hands it a `Transfer` that moves bytes
on one stream and counts them; the engine decides how many streams, when the warm-up is over,
when to stop, and turns the per-stream series into one figure (docs/method.md §2):

    result = await measure_direction(transfer, EngineOptions(duration_seconds=5), sink)

Aggregation is RMBT's: with t* the earliest last-sample time over all streams, the window is
[start, t*], and the rate is the sum of the streams' least-squares rates over it (fit.py): bytes
arrive in lumps, and a difference of the two ends would move by a lump at either end.
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
from netprobe.measure.fit import STANDARD_ERRORS, fit_rate
from netprobe.measure.sampling import bytes_at
from netprobe.results import Direction, DirectionResult, Method, StreamSeries
from netprobe.units import format_size

ENGINE = f"netprobe-engine/{__version__}"
_FINISH_TIMEOUT_SECONDS = 10.0
# A queue standing at the bottleneck (RTT under load this far above the path's minimum) means
# the link is full: more streams would only lengthen the queue, so none are added.
_QUEUE_MIN_SECONDS = 0.001
_QUEUE_SHARE_OF_MIN_RTT = 0.25
# Ticks whose rates say whether bytes arrive smoothly or in lumps (`_Run.smooth`).
_SMOOTH_TICKS = 10


class ByteCounter:
    """Payload bytes moved by one stream; written by the stream, read by the sampler.

    A stream may set `source` to the kernel's count (TCP_INFO): for an upload, what the peer
    acknowledged rather than what sits in our socket buffer; for a download, what arrived even
    if not yet read. `read()` prefers it and falls back to the stream's own count. `rtts`, if
    set, gives (RTT under load, minimum RTT) seconds: whether a queue stands at the bottleneck.
    """

    __slots__ = ("by_kernel", "bytes", "moved_bytes", "peak", "rtts", "source")

    def __init__(self) -> None:
        self.bytes = 0
        self.source: Callable[[], int | None] | None = None
        self.rtts: Callable[[], tuple[float, float] | None] | None = None
        self.by_kernel = False  # the last read came from the kernel's count
        self.peak = 0
        # Set by the stream as it drops its connection: all the payload the link carries for
        # it, what crosses after the last sample included (the test's cost, `total_bytes`).
        self.moved_bytes: int | None = None

    def add(self, n: int) -> None:
        self.bytes += n

    def moved(self) -> int:
        """What this stream put on the line, for quotas and the cross-traffic gate: an upload's
        bytes still queued at the stop cross the link after it and are the test's own. Without
        the kernel's figure, everything written (an upper bound)."""
        if self.moved_bytes is not None:
            return max(self.moved_bytes, self.peak)
        return max(self.bytes, self.peak)

    def read(self) -> int:
        """The count so far; it never goes back (a retransmission timeout makes the kernel
        forget selective ACKs, which would read as bytes un-arriving and then a burst)."""
        kernel = self.source() if self.source is not None else None
        self.by_kernel = kernel is not None
        self.peak = max(self.peak, self.bytes if kernel is None else kernel)
        return self.peak


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
    """How a direction is measured; the defaults suit 1 Mbit/s to tens of Gbit/s.

    Warm-up ends when three consecutive rate spans agree within `warmup_tolerance`; the window
    then starts at the second of them (steady data is not thrown away) and ends once its figure
    is known within `adaptive_tolerance` (`_window_uncertainty`), at least `adaptive_min_seconds`
    and two spans after it started, at most `adaptive_max_seconds`; a window still short of
    `slow_line_window_bytes` then may run on to `slow_line_max_seconds`: on a slow line a few
    lumps of bytes are a large share of a 6 s window. A span is `rate_span_seconds` or, on
    slow lines, the time `span_min_bytes` take: below a few hundred kB, ACKs and segments
    arriving in lumps look like rate changes that are not there. A line whose bytes arrive
    smoothly (the last ticks' rates within `lump_tolerance` of their mean, as when a modem
    serializes frames) needs only `smooth_span_min_bytes`. A fast line that would spend the
    budget before it looks steady (CPU noise, not TCP's ramp, on multi-Gbit paths) ends its
    warm-up by time once `warmup_budget_share` of the budget is gone, leaving the rest for the
    window.
    """

    streams: int | None = None
    streams_min: int = 4
    streams_max: int = 16
    duration_seconds: float | None = None
    max_bytes: int = 3_000_000_000
    time_limit_seconds: float = 30.0
    sample_interval_seconds: float = 0.1
    rate_span_seconds: float = 0.25
    span_min_bytes: int = 512_000
    smooth_span_min_bytes: int = 64_000
    lump_tolerance: float = 0.25
    span_max_seconds: float = 2.0
    warmup_min_seconds: float = 0.5
    warmup_max_seconds: float = 8.0
    warmup_tolerance: float = 0.05
    warmup_budget_share: float = 0.4
    stream_gain: float = 0.10
    adaptive_min_seconds: float = 0.6
    adaptive_max_seconds: float = 6.0
    slow_line_max_seconds: float = 12.0
    slow_line_window_bytes: int = 3_000_000
    adaptive_tolerance: float = 0.01
    stall_seconds: float = 5.0

    def method(self, protocol: str, streams: int, measured_at: str) -> Method:
        """The rules as configured; `_Run.method` says which of them ended the test."""
        window = (
            f"fixed {self.duration_seconds:g} s"
            if self.duration_seconds
            else f"adaptive {self.adaptive_min_seconds:g}-{self.adaptive_max_seconds:g} s "
            f"({self.slow_line_max_seconds:g} s while the window holds under "
            f"{format_size(self.slow_line_window_bytes)}): "
            f"stop when the least-squares rate is known within {self.adaptive_tolerance:.1%} "
            f"({STANDARD_ERRORS:g} standard errors, lumps allowed for)"
        )
        return Method(
            protocol=protocol,
            engine=ENGINE,
            streams=streams,
            warmup_rule=(
                f"three rates over {self.rate_span_seconds:g} s and "
                f"{format_size(self.span_min_bytes)} ({format_size(self.smooth_span_min_bytes)} "
                f"on a smooth line) within {self.warmup_tolerance:.0%}, "
                f"min {self.warmup_min_seconds:g} s, max {self.warmup_max_seconds:g} s "
                f"or {self.warmup_budget_share:.0%} of the budget"
            ),
            window_rule=window + f"; budget {format_size(self.max_bytes)}",
            aggregate="rmbt",
            measured_at=measured_at,
        )


def rmbt_window(
    series: list[StreamSeries], start: float, end: float = float("inf")
) -> tuple[float, float, float]:
    """(window bytes, window seconds, bytes before start) aggregated the RMBT way.

    The window ends at t* or at `end`, whichever is first: a receiver's series goes on while
    the sender's buffers drain after the stop, and that tail is not the measured window.
    """
    sampled = [s for s in series if s.t_seconds]
    if not sampled:
        return 0.0, 0.0, 0.0
    t_star = min(end, min(s.t_seconds[-1] for s in sampled))
    before = sum(bytes_at(s, start) for s in sampled)
    if t_star <= start:
        return 0.0, 0.0, before
    return sum(bytes_at(s, t_star) for s in sampled) - before, t_star - start, before


def window_rate(series: list[StreamSeries], start: float, window_seconds: float) -> float:
    """The streams' summed least-squares rates over [start, start + window_seconds], each fitted
    to its samples inside the window and its count interpolated at both ends."""
    end = start + window_seconds
    rate = 0.0
    for stream in series:
        if not stream.t_seconds:
            continue
        inside = [
            (t, b) for t, b in zip(stream.t_seconds, stream.bytes, strict=True) if start < t < end
        ]
        times = [start, *(t for t, _ in inside), end]
        counts = [bytes_at(stream, start), *(b for _, b in inside), bytes_at(stream, end)]
        rate += fit_rate(times, counts).bytes_per_second
    return rate


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
        # What ended the warm-up and the window, for the method record.
        self.warmup_ended_by = ""
        self.window_ended_by = ""

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
        """All streams' bytes at t, interpolated between ticks (spans need not fit the ticks)."""
        i = bisect.bisect_left(self.ticks, t)
        if i >= len(self.ticks):
            return float(self.totals[-1]) if self.totals else 0.0
        if i == 0:
            return self.totals[0] * max(t, 0.0) / self.ticks[0] if self.ticks[0] > 0 else 0.0
        t0, t1 = self.ticks[i - 1], self.ticks[i]
        b0, b1 = self.totals[i - 1], self.totals[i]
        return b0 + (b1 - b0) * (t - t0) / (t1 - t0) if t1 > t0 else float(b1)

    def rate(self, end: float, span: float) -> float:
        return (self.total_at(end) - self.total_at(end - span)) / span

    def span(self, now: float) -> float:
        """Seconds a rate is taken over: long enough to hold `span_min_bytes` at the mean rate,
        or `smooth_span_min_bytes` where bytes arrive without lumps."""
        options = self.options
        mean_rate = self.totals[-1] / now if self.totals and now > 0 else 0.0
        floor = options.smooth_span_min_bytes if self.smooth() else options.span_min_bytes
        needed = floor / mean_rate if mean_rate > 0 else options.span_max_seconds
        return min(options.span_max_seconds, max(options.rate_span_seconds, needed))

    def smooth(self) -> bool:
        """The last `_SMOOTH_TICKS` ticks' rates all lie within `lump_tolerance` of their mean:
        no tick went without bytes while another took a lump. Too few ticks count as lumpy."""
        if len(self.ticks) <= _SMOOTH_TICKS:
            return False
        ticks, totals = self.ticks[-_SMOOTH_TICKS - 1 :], self.totals[-_SMOOTH_TICKS - 1 :]
        rates = [
            (totals[i] - totals[i - 1]) / (ticks[i] - ticks[i - 1])
            for i in range(1, len(ticks))
            if ticks[i] > ticks[i - 1]
        ]
        mean = sum(rates) / len(rates) if rates else 0.0
        tolerance = self.options.lump_tolerance
        return mean > 0 and all(abs(rate / mean - 1) <= tolerance for rate in rates)

    def stable(self, now: float, span: float) -> bool:
        """The last three rate spans agree within the warm-up tolerance."""
        rates = [self.rate(now - k * span, span) for k in range(3)]
        low, high = min(rates), max(rates)
        return low > 0 and high / low - 1 <= self.options.warmup_tolerance

    def link_full(self) -> bool:
        """Most streams see a standing queue: the bottleneck is full, more streams cannot help."""
        queued = []
        for counter in self.counters:
            rtts = counter.rtts() if counter.rtts is not None else None
            if rtts is not None:
                loaded, minimum = rtts
                margin = max(_QUEUE_MIN_SECONDS, _QUEUE_SHARE_OF_MIN_RTT * minimum)
                queued.append(loaded - minimum > margin)
        return 2 * sum(queued) > len(queued) > 0

    def method(self, measured_at: str) -> Method:
        """The configured rules plus what actually ended the warm-up and the window."""
        method = self.options.method(self.transfer.protocol, len(self.tasks), measured_at)
        if self.warmup_ended_by:
            method.warmup_rule += f"; ended by {self.warmup_ended_by}"
        if self.window_ended_by:
            method.window_rule += f"; ended by {self.window_ended_by}"
        return method

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
    """Measure one direction; a failure comes back as a failed result, never as a zero rate.

    A failed result still carries what the attempt moved and cost: a metered line paid for it.
    """
    run = _Run(transfer, options, sink or NullSink())
    try:
        return await _measure(run, clock)
    except MeasurementError as exc:
        run.emit("error", message=str(exc))
        failed = DirectionResult.failed(
            transfer.direction, exc.reason, str(exc), run.method("receiver")
        )
        failed.total_bytes = sum(c.moved() for c in run.counters)
        failed.streams = len(run.tasks)
        failed.duration_seconds = clock() - run.start
        failed.cpu_seconds = time.process_time() - run.cpu_start
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
    span = options.rate_span_seconds
    last_progress = (0.0, 0)
    tick = 0
    while True:
        tick += 1
        await asyncio.sleep(max(0.0, run.start + tick * interval - clock()))
        now = clock() - run.start
        run.sample(now)
        run.check_streams()
        total = run.totals[-1]
        if warmup_end is None:
            span = run.span(now)  # fixed once the window starts: the stop rule uses it too
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
            bytes_per_second=run.rate(now, span),
            total_bytes=total,
            streams=len(run.tasks),
        )

        if warmup_end is None:
            warmup_end = _warmup_end(run, now, added_at, span)
            if warmup_end is None and run.warmup_ended_by.startswith("agreement"):
                # Steady with this many streams: try twice as many while they still help and
                # the bottleneck has room (no standing queue).
                rate = run.rate(now, 3 * span)
                gained = rate_before_add is None or rate > rate_before_add * (
                    1 + options.stream_gain
                )
                if (
                    adaptive_streams
                    and gained
                    and len(run.tasks) < options.streams_max
                    and not run.link_full()
                ):
                    rate_before_add, added_at = rate, now
                    run.warmup_ended_by = ""
                    run.add_streams(min(len(run.tasks), options.streams_max - len(run.tasks)))
                else:
                    warmup_end = now - 2 * span
            if warmup_end is not None:
                run.emit(
                    "warmup_done",
                    t_seconds=now,
                    bytes_per_second=run.rate(now, span),
                    total_bytes=total,
                    streams=len(run.tasks),
                )
        elif _window_done(run, warmup_end, now, span):
            break
        if total >= options.max_bytes:
            if warmup_end is None or now - warmup_end < interval:
                raise BudgetExceeded(
                    f"the byte budget of {format_size(options.max_bytes)} ran out during warm-up "
                    f"({format_size(total)} in {now:.1f} s); "
                    "raise --max-bytes for a valid measurement"
                )
            run.window_ended_by = "budget"
            break
        if now >= options.time_limit_seconds:
            if warmup_end is None:
                raise MeasurementError("time limit reached during warm-up", reason="timeout")
            run.window_ended_by = "time limit"
            break

    stop_seconds = clock() - run.start
    assert warmup_end is not None
    # Stopping can take seconds (a server sends its report, a protocol closes politely): say
    # so, so a progress line does not look frozen.
    run.emit("finishing", t_seconds=now, detail=_FINISH_TIMEOUT_SECONDS)
    receiver = await _finish(run)
    series = receiver or run.series
    window_bytes, window_seconds, warmup_bytes = rmbt_window(series, warmup_end, now)
    if window_seconds <= 0 or window_bytes <= 0:
        raise MeasurementError("no bytes in the measurement window", reason="empty_window")
    # A download is counted where it arrives; an upload is the server's report when there is
    # one, else what the peer's TCP acknowledged (TCP_INFO: the receiver's count), else what
    # was written (the sender's, which includes what still waited in buffers).
    acknowledged = all(c.by_kernel for c in run.counters)
    measured_at = (
        "receiver" if receiver or acknowledged or run.transfer.direction == "download" else "sender"
    )
    result = DirectionResult(
        direction=run.transfer.direction,
        ok=True,
        bytes_per_second=window_rate(series, warmup_end, window_seconds),
        bytes=round(window_bytes),
        warmup_bytes=round(warmup_bytes),
        warmup_seconds=warmup_end,
        window_seconds=window_seconds,
        duration_seconds=stop_seconds,
        total_bytes=max(
            round(sum(s.bytes[-1] for s in series if s.bytes)),
            sum(c.moved() for c in run.counters),
        ),
        streams=len(run.tasks),
        samples=series,
        method=run.method(measured_at),
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


def _warmup_end(run: _Run, now: float, added_at: float, span: float) -> float | None:
    """Where the window starts if the warm-up is over now, else None.

    Agreement is only reported (`warmup_ended_by`): the caller may add streams first.
    """
    options = run.options
    if now >= options.warmup_max_seconds:
        run.warmup_ended_by = f"the {options.warmup_max_seconds:g} s limit"
        return now
    if now < options.warmup_min_seconds:
        return None
    if run.totals[-1] >= options.warmup_budget_share * options.max_bytes:
        # Only multi-Gbit paths get here: TCP's ramp took milliseconds, what is left is noise.
        run.warmup_ended_by = f"time: {options.warmup_budget_share:.0%} of the budget spent"
        return now
    if now - added_at >= 3 * span and run.stable(now, span):
        run.warmup_ended_by = f"agreement of three {span:.2g} s rates"
    return None


def _window_done(run: _Run, warmup_end: float, now: float, span: float) -> bool:
    """True when the window should end now; sets what ended it."""
    options = run.options
    window = now - warmup_end
    if options.duration_seconds is not None:
        if window >= options.duration_seconds - options.sample_interval_seconds / 2:
            run.window_ended_by = f"the fixed {options.duration_seconds:g} s"
            return True
        return False
    if window >= options.slow_line_max_seconds:
        run.window_ended_by = f"the {options.slow_line_max_seconds:g} s limit of a slow line"
        return True
    if (
        window >= options.adaptive_max_seconds
        and run.total_at(now) - run.total_at(warmup_end) >= options.slow_line_window_bytes
    ):
        run.window_ended_by = f"the {options.adaptive_max_seconds:g} s limit"
        return True
    if (
        window >= max(options.adaptive_min_seconds, 2 * span)
        and _window_uncertainty(run, warmup_end, now) <= options.adaptive_tolerance
    ):
        run.window_ended_by = f"precision: known within {options.adaptive_tolerance:.1%}"
        return True
    return False


def _window_uncertainty(run: _Run, start: float, now: float) -> float:
    """How far the window's figure may be off, relative (fit.py): the least-squares rate of the
    count over the window, allowing for lumps. A smooth line is known after a few ticks; one
    whose bytes arrive in lumps (ACK trains, loss recovery, bursts let through a shaper) needs
    a window long enough to hold many lumps.
    """
    inside = [
        (t, total) for t, total in zip(run.ticks, run.totals, strict=True) if start < t <= now
    ]
    times = [start, *(t for t, _ in inside)]
    counts = [run.total_at(start), *(total for _, total in inside)]
    return fit_rate(times, counts).uncertainty


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
