"""One drive probe cycle: download and upload through each drive's adapter, then judge the rates.

The agent calls `probe_drives` right after a line test, with that test's result and run id, so
the drive and the line are measured back to back on the same WAN but never at the same time
(docs/method.md §5):

    line = await measure_line(backend, ["download", "upload"], options)
    drives = await probe_drives(config.drives, line=line, run_id=line.run_id)

Download: one connection (free Baidu accounts are punished for parallel connections) until its
steady state has held `duration` seconds: free tiers serve a burst first, of a length and size
nobody publishes, so the burst's end is found in the samples (`steady.py`), and with no burst
in sight the probe waits `burst` seconds before calling the rate steady. With `connections: N`
a second phase runs N at once to tell a per-connection cap from an aggregate one. Upload:
fresh random bytes (drives deduplicate by hash), deleted afterwards. Both stop early at the drive's data budget. A failure is a failed
result with a reason; the next drive is probed all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from netprobe.drives.adapter import (
    CHUNK_BYTES,
    AdapterFactory,
    Allowance,
    DriveAdapter,
    Meter,
    Redactor,
)
from netprobe.drives.classify import REFUSAL_REASONS, Evidence, classify
from netprobe.drives.config import DriveConfig
from netprobe.drives.result import GIBIBYTE, DriveResult, DriveTransfer
from netprobe.drives.steady import SteadyState, find_steady
from netprobe.errors import BudgetReached, ConfigError, MeasurementError, TransportError
from netprobe.events import Event, NullSink, Sink, result_event
from netprobe.measure.sampling import StallWatch, bytes_at
from netprobe.results import Direction, LineResult, StreamSeries

log = logging.getLogger("netprobe.drives")

SAMPLE_SECONDS = 0.1
STALL_SECONDS = 20.0
PHASE_PAUSE_SECONDS = 0.5
# The steady state is looked for this often: each look fits the whole timeline again.
STEADY_CHECK_SECONDS = 0.5


def _adapters() -> dict[str, AdapterFactory]:
    from netprobe.drives.baidu import BaiduDrive
    from netprobe.drives.http import HttpDrive
    from netprobe.drives.rclone import RcloneDrive
    from netprobe.drives.s3 import S3Drive
    from netprobe.drives.webdav import WebDavDrive

    return {
        "http": HttpDrive,
        "webdav": WebDavDrive,
        "s3": S3Drive,
        "rclone": RcloneDrive,
        "baidu": BaiduDrive,
    }


async def probe_drives(
    drives: list[DriveConfig],
    *,
    line: LineResult | None,
    run_id: str,
    sink: Sink | None = None,
    adapters: Mapping[str, AdapterFactory] | None = None,
    probe_id: str = "",
) -> list[DriveResult]:
    """Probe the drives one after another; free/paid pairs get their parity ratio.

    Each probe's events go to `sink` as it runs; once the pairs are judged, one "result"
    event per drive carries its finished record.
    """
    table = adapters or _adapters()
    results = [
        await probe_drive(drive, line=line, run_id=run_id, sink=sink, adapters=table)
        for drive in drives
    ]
    _pair_free_with_paid(results)
    for result in results:
        result.probe_id = probe_id
        if sink is not None:
            sink.emit(result_event(result.to_dict()))
    return results


async def probe_drive(
    drive: DriveConfig,
    *,
    line: LineResult | None,
    run_id: str,
    sink: Sink | None = None,
    adapters: Mapping[str, AdapterFactory] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DriveResult:
    """Probe one drive; never raises for the drive's own failures."""
    probe = _Probe(drive, run_id, sink or NullSink(), clock)
    result = DriveResult(
        drive=drive.name,
        access=drive.kind,
        tier=drive.tier if drive.tier != "auto" else "unknown",
        group=drive.group,
        run_id=run_id,
        budget_bytes=drive.max_bytes,
    )
    try:
        adapter = (adapters or _adapters())[drive.kind](drive, probe.redactor)
    except ConfigError as exc:
        probe.fail_all(result, "credentials", str(exc))
    else:
        await probe.run(adapter, result)
    for transfer in result.directions():
        _judge(transfer, drive, line)
    return result


@dataclass(frozen=True)
class _SteadyRule:
    """When a download phase has seen enough: its steady state held `hold_seconds`, after a
    burst that ended, or, with no burst in sight, once `wait_seconds` have passed."""

    hold_seconds: float
    wait_seconds: float

    def met(self, state: SteadyState | None) -> bool:
        if state is None or state.held_seconds < self.hold_seconds:
            return False
        return state.burst_seconds is not None or state.held_seconds >= self.wait_seconds


@dataclass
class _Phase:
    """The aggregate byte count of one or more connections, on a timeline from the first byte."""

    meters: list[Meter]
    timeline: StreamSeries = field(default_factory=lambda: StreamSeries(stream=0))
    failures: list[MeasurementError] = field(default_factory=list)
    first_byte_at: float | None = None
    stop_reason: str = "ended"
    by_last_byte: bool = False

    def count_time(self, now: float) -> float:
        """When the byte count was last true. A download's count is as of its last byte: a
        sample taken late (a busy machine) must not stretch the time the bytes took. An
        upload's count changes as the socket drains, without a byte added: it is as of now."""
        if not self.by_last_byte:
            return now
        lasts = [m.last_byte_at for m in self.meters if m.last_byte_at is not None]
        return max(lasts, default=now)

    @property
    def end_seconds(self) -> float:
        return self.timeline.t_seconds[-1] if self.timeline.t_seconds else 0.0

    @property
    def bytes(self) -> int:
        return sum(m.read() for m in self.meters)

    def steady(self) -> SteadyState | None:
        return find_steady(self.timeline)

    def end_at_last_byte(self) -> None:
        """The transfers ended by themselves: the timeline ends with their last byte, not at
        the next sampling tick (which would count idle time)."""
        lasts = [m.last_byte_at for m in self.meters if m.last_byte_at is not None]
        firsts = [m.first_byte_at for m in self.meters if m.first_byte_at is not None]
        if not lasts or not firsts:
            return
        if self.first_byte_at is None:
            self.first_byte_at = min(firsts)
        end = max(lasts) - self.first_byte_at
        series = self.timeline
        while series.t_seconds and series.t_seconds[-1] >= end:
            series.t_seconds.pop()
            series.bytes.pop()
        if end > 0:
            series.t_seconds.append(end)
            series.bytes.append(self.bytes)

    def per_second_bytes(self) -> list[int]:
        marks = [bytes_at(self.timeline, float(s)) for s in range(int(self.end_seconds) + 1)]
        return [round(b - a) for a, b in itertools.pairwise(marks)]


class _Probe:
    """The measurement of one drive: its redactor, budget, clock and event sink."""

    def __init__(self, drive: DriveConfig, run_id: str, sink: Sink, clock: Callable[[], float]):
        self.drive = drive
        self.run_id = run_id
        self.sink = sink
        self.clock = clock
        self.redactor = Redactor()
        self.used_bytes = 0

    def emit(self, kind: str, direction: Direction, **fields: object) -> None:
        fields.setdefault("message", self.drive.name)
        self.sink.emit(Event(kind=kind, direction=direction, **fields))  # type: ignore[arg-type]

    def failed(
        self, direction: Direction, reason: str, message: str, phase: _Phase | None = None
    ) -> DriveTransfer:
        error = self.redactor.scrub(message)
        self.emit("error", direction, message=f"{self.drive.name}: {error}")
        transfer = DriveTransfer(direction=direction, ok=False, reason=reason, error=error)
        if phase is not None:
            transfer.bytes = phase.bytes
            transfer.link_seconds = phase.meters[0].link_seconds
            transfer.ttfb_seconds = phase.meters[0].ttfb_seconds
            transfer.per_second_bytes = phase.per_second_bytes()
        return transfer

    async def run(self, adapter: DriveAdapter, result: DriveResult) -> None:
        """Sign in, then each direction; whatever breaks ends up in the result with a reason."""
        drive = self.drive
        try:
            tier = await adapter.open()
            if drive.tier == "auto":
                result.tier = tier
            if drive.download.enabled:
                result.download = await self.download(adapter)
            if drive.upload.enabled:
                result.upload = await self.upload(adapter)
        except (MeasurementError, ConfigError) as exc:
            self.fail_all(result, exc.reason, str(exc))
        except Exception as exc:  # a bug or an OS error must not stop the other drives
            message = self.redactor.scrub(f"{type(exc).__name__}: {exc}")
            log.error("drive %s: unexpected failure: %s", drive.name, message)
            self.fail_all(result, "internal", message)
        finally:
            with contextlib.suppress(Exception):
                await adapter.close()

    def fail_all(self, result: DriveResult, reason: str, message: str) -> None:
        directions: list[Direction] = []
        if self.drive.download.enabled:
            directions.append("download")
        if self.drive.upload.enabled:
            directions.append("upload")
        for direction in directions:
            if getattr(result, direction) is None:
                setattr(result, direction, self.failed(direction, reason, message))

    async def _sample(
        self,
        direction: Direction,
        phase: _Phase,
        tasks: list[asyncio.Task[None]],
        rule: _SteadyRule | None,
    ) -> str:
        """Sample the meters until the tasks end ("ended"), the steady state held ("steady")
        or the time limit is hit ("time_limit"); a stall or a transfer without bytes raises."""
        started = self.clock()
        stall = StallWatch(STALL_SECONDS, started)
        next_event = 1.0
        next_check = 0.0
        burst_seen = False
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            now = self.clock()
            total = phase.bytes
            firsts = [m.first_byte_at for m in phase.meters if m.first_byte_at is not None]
            if firsts and phase.first_byte_at is None:
                phase.first_byte_at = min(firsts)
            if phase.first_byte_at is not None:
                t = phase.count_time(now) - phase.first_byte_at
                if not phase.timeline.t_seconds or t > phase.timeline.t_seconds[-1]:
                    phase.timeline.t_seconds.append(t)
                    phase.timeline.bytes.append(total)
                if t >= next_event:
                    next_event += 1.0
                    rate = total - bytes_at(phase.timeline, t - 1.0)
                    self.emit(
                        "sample",
                        direction,
                        t_seconds=t,
                        bytes_per_second=rate,
                        total_bytes=total,
                        streams=len(tasks),
                    )
                if rule is not None and t >= next_check:
                    next_check = t + STEADY_CHECK_SECONDS
                    state = find_steady(phase.timeline)
                    if not burst_seen and state is not None and state.burst_seconds is not None:
                        burst_seen = True  # the progress line now says "measuring"
                        self.emit(
                            "warmup_done",
                            direction,
                            t_seconds=t,
                            bytes_per_second=state.bytes_per_second,
                            total_bytes=total,
                            streams=len(tasks),
                            detail=state.burst_seconds,
                        )
                    if rule.met(state):
                        return "steady"
            if all(task.done() for task in tasks):
                return "ended"
            stall.check(now, total)
            if now - started >= self.drive.time_limit_seconds:
                if phase.first_byte_at is None or rule is None:
                    raise TransportError(
                        f"not done within the time limit of {self.drive.time_limit_seconds:g} s",
                        reason="timeout",
                    )
                return "time_limit"

    async def _run_phase(
        self,
        direction: Direction,
        meters: list[Meter],
        work: Callable[[Meter], Coroutine[Any, Any, None]],
        rule: _SteadyRule | None,
    ) -> _Phase:
        phase = _Phase(meters, by_last_byte=direction == "download")
        tasks = [asyncio.create_task(work(meter)) for meter in meters]
        ended_by_themselves = False
        try:
            phase.stop_reason = await self._sample(direction, phase, tasks, rule)
            ended_by_themselves = phase.stop_reason == "ended"
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            self.used_bytes += phase.bytes
        for outcome in outcomes:
            if isinstance(outcome, MeasurementError):
                phase.failures.append(outcome)
            elif isinstance(outcome, Exception) and not isinstance(outcome, BudgetReached):
                raise outcome
        if ended_by_themselves:
            phase.end_at_last_byte()
        return phase

    def _remaining_budget(self) -> int:
        return self.drive.max_bytes - self.used_bytes

    def _download_budget(self) -> int:
        """What the download may use: the upload's share is kept, and the last chunk's overshoot."""
        upload = self.drive.upload
        return self._remaining_budget() - (upload.size if upload.enabled else 0) - CHUNK_BYTES

    async def download(self, adapter: DriveAdapter) -> DriveTransfer:
        drive = self.drive
        self.emit("started", "download", streams=1)

        async def repeatedly(meter: Meter) -> None:
            while True:
                await adapter.download(meter)

        rule = _SteadyRule(hold_seconds=drive.duration_seconds, wait_seconds=drive.burst_seconds)
        try:
            allowance = Allowance(self._download_budget())
            single = await self._run_phase(
                "download", [Meter(self.clock, allowance)], repeatedly, rule
            )
        except MeasurementError as exc:
            return self.failed("download", exc.reason, str(exc))
        if single.failures:
            failure = single.failures[0]
            return self.failed("download", failure.reason, str(failure), single)
        state = single.steady()
        if state is None:
            return self.failed(
                "download", "max_bytes", "the drive's max_bytes left nothing to download", single
            )
        transfer = DriveTransfer(
            direction="download",
            ok=True,
            bytes_per_second=state.bytes_per_second,
            burst_bytes_per_second=state.burst_bytes_per_second,
            burst_seconds=state.burst_seconds,
            burst_bytes=None if state.burst_bytes is None else round(state.burst_bytes),
            steady_seconds=state.held_seconds,
            stop_reason="max_bytes" if allowance.bytes_left <= 0 else single.stop_reason,
            ttfb_seconds=single.meters[0].ttfb_seconds,
            link_seconds=single.meters[0].link_seconds,
            bytes=single.bytes,
            duration_seconds=single.end_seconds,
            per_second_bytes=single.per_second_bytes(),
        )
        if drive.connections > 1 and self._download_budget() > 0:
            await asyncio.sleep(PHASE_PAUSE_SECONDS)
            allowance = Allowance(self._download_budget())
            meters = [Meter(self.clock, allowance) for _ in range(drive.connections)]
            # A burst comes again with each new connection: wait at least as long as it lasted.
            multi_rule = _SteadyRule(drive.duration_seconds, state.burst_seconds or 0.0)
            try:
                multi = await self._run_phase("download", meters, repeatedly, multi_rule)
            except MeasurementError as exc:
                transfer.error = self.redactor.scrub(f"{drive.connections} connections: {exc}")
            else:
                transfer.bytes += multi.bytes
                transfer.multi_connections = drive.connections
                multi_state = multi.steady()
                if multi_state is not None:
                    transfer.multi_bytes_per_second = multi_state.bytes_per_second
                transfer.multi_refused = sum(f.reason in REFUSAL_REASONS for f in multi.failures)
                other = [f for f in multi.failures if f.reason not in REFUSAL_REASONS]
                if other:
                    transfer.reason = other[0].reason
                    transfer.error = self.redactor.scrub(
                        f"{drive.connections} connections: {other[0]}"
                    )
        self.emit(
            "finished",
            "download",
            bytes_per_second=transfer.bytes_per_second,
            total_bytes=transfer.bytes,
        )
        return transfer

    async def upload(self, adapter: DriveAdapter) -> DriveTransfer:
        drive = self.drive
        size = drive.upload.size
        if size > self._remaining_budget():
            return self.failed(
                "upload",
                "budget",
                f"the upload of {size} bytes does not fit the drive's remaining budget",
            )
        # Fresh bytes every time: drives deduplicate by hash and would "upload" a known file at once.
        payload = random.Random(os.urandom(32)).randbytes(size)
        name = f"{drive.upload.path.rstrip('/')}/netprobe-{self.run_id[:12]}-{secrets.token_hex(4)}.bin"
        self.emit("started", "upload", streams=1)
        meter = Meter(self.clock)
        confirmed_at: list[float] = []

        async def send(meter: Meter) -> None:
            await adapter.upload(name, payload, meter)
            confirmed_at.append(self.clock())

        try:
            phase = await self._run_phase("upload", [meter], send, None)
        except MeasurementError as exc:
            await self._delete(adapter, name)
            return self.failed("upload", exc.reason, str(exc))
        await self._delete(adapter, name)
        if phase.failures:
            failure = phase.failures[0]
            return self.failed("upload", failure.reason, str(failure), phase)
        if phase.first_byte_at is None or not confirmed_at:
            return self.failed("upload", "protocol", "the drive took the upload without any bytes")
        # The drive confirmed the upload: every byte had arrived by then. Its buffers (socket,
        # proxy, staging) swallow the first megabytes at once, so only the average from the
        # first byte to the confirmation is a fair rate, and no burst figure is made.
        completed = confirmed_at[0] - phase.first_byte_at
        phase.timeline.t_seconds.append(completed)
        phase.timeline.bytes.append(size)
        meter.unsent = None
        steady = size / completed
        self.emit("finished", "upload", bytes_per_second=steady, total_bytes=size)
        return DriveTransfer(
            direction="upload",
            ok=True,
            bytes_per_second=steady,
            ttfb_seconds=meter.ttfb_seconds,
            link_seconds=meter.link_seconds,
            bytes=size,
            duration_seconds=phase.end_seconds,
            per_second_bytes=phase.per_second_bytes(),
        )

    async def _delete(self, adapter: DriveAdapter, name: str) -> None:
        try:
            await adapter.delete(name)
        except MeasurementError as exc:
            log.warning(
                "drive %s: the uploaded test file was not deleted: %s",
                self.drive.name,
                self.redactor.scrub(str(exc)),
            )


def _judge(transfer: DriveTransfer, drive: DriveConfig, line: LineResult | None) -> None:
    """Line ratio, time for 1 GiB, floors and throttle kind of one direction."""
    line_direction = getattr(line, transfer.direction, None) if line is not None else None
    line_rate = (
        line_direction.bytes_per_second
        if line_direction is not None and line_direction.ok
        else None
    )
    floors = drive.floors
    transfer.floor_bytes_per_second = {
        "critical": floors.critical,
        "warning": max(floors.warning, floors.warning_line_share * (line_rate or 0.0)),
    }
    steady = transfer.bytes_per_second
    if transfer.ok and steady:
        transfer.gibibyte_seconds = GIBIBYTE / steady
        transfer.floor = floors.severity(steady, line_rate)
        if line_rate:
            transfer.line_ratio = steady / line_rate
    transfer.throttle = classify(
        Evidence(
            steady_bytes_per_second=steady if transfer.ok else None,
            burst_bytes_per_second=transfer.burst_bytes_per_second,
            reason=transfer.reason,
            multi_connections=transfer.multi_connections,
            multi_bytes_per_second=transfer.multi_bytes_per_second,
            multi_refused=transfer.multi_refused,
            line_bytes_per_second=line_rate,
        )
    )


def _pair_free_with_paid(results: list[DriveResult]) -> None:
    """Free/paid parity: each free account's rate as a share of its group's paid account."""
    paid = {r.group: r for r in results if r.group and r.tier == "paid"}
    for result in results:
        partner = paid.get(result.group) if result.group and result.tier == "free" else None
        if partner is None:
            continue
        for transfer in result.directions():
            reference = getattr(partner, transfer.direction)
            if (
                transfer.ok
                and reference is not None
                and reference.ok
                and reference.bytes_per_second
            ):
                transfer.paid_ratio = (
                    transfer.bytes_per_second or 0.0
                ) / reference.bytes_per_second
