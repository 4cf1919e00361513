"""The agent's remote_write loop: scrape its own registry, queue durably, send in time order.

Like Prometheus in agent mode, the pusher scrapes the agent's prometheus_client registry every
`interval`, stamps each sample with the scrape time and adds the external labels; the scrape
goes into the outbox first and leaves it only once the receiver has answered, so an outage or a
restart loses nothing that fits the outbox limits.

    pusher = Pusher(config.push, registry, store_path="/var/lib/netprobe/push-outbox.db",
                    probe_id=config.probe.id)
    registry.register(pusher)        # its own netprobe_push_* metrics
    await pusher.run()               # until cancelled
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from netprobe.clock import EARLIEST_PLAUSIBLE
from netprobe.errors import StoreError
from netprobe.events import ResultObserver
from netprobe.push.client import RemoteWriteClient, Verdict
from netprobe.push.clockjump import JumpGuard
from netprobe.push.config import PushConfig
from netprobe.push.outbox import Batch, Outbox, SeriesLabels, Trimmed, canonical_labels
from netprobe.push.snappy import compress
from netprobe.push.writerequest import encode_write_request

log = logging.getLogger("netprobe.push")
T = TypeVar("T")

# The wall clock may move this far against the monotonic clock between scrapes (NTP slews at
# most 0.5 ms/s) before a scrape counts as stamped after a jump; that many consecutive scrapes
# confirm a jump, fewer were a glitch.
CLOCK_TOLERANCE_SECONDS = 10.0
CLOCK_CONFIRMATIONS = 3
Scrape = tuple[int, list[tuple[SeriesLabels, float]]]  # (timestamp_ms, samples)

# prometheus_client adds a `_created` sample to counters, histograms and summaries: a
# start-time gauge that Prometheus itself does not ingest from text scrapes.
_CREATED_FAMILIES = {"counter", "histogram", "summary", "gaugehistogram"}


class Pusher(ResultObserver):
    """Pushes the samples of `registry` to `config.url`; also a collector of its own metrics.

    As a sink of the agent's runs it scrapes again as soon as a result is stored, so a new
    test's figures reach the receiver without waiting out the interval.
    """

    def __init__(
        self,
        config: PushConfig,
        registry: CollectorRegistry,
        *,
        store_path: str,
        probe_id: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._store_path = store_path
        self._clock = clock
        self._monotonic = monotonic
        self._jumps: JumpGuard[Scrape] = JumpGuard(
            tolerance_seconds=CLOCK_TOLERANCE_SECONDS, confirmations=CLOCK_CONFIRMATIONS
        )
        self._rng = rng or random.Random()
        self._external_labels = {
            "job": "netprobe",
            "instance": probe_id,
            "probe_id": probe_id,
            **config.external_labels,
        }
        self._outbox: Outbox | None = None
        self._store: ThreadPoolExecutor | None = None
        self._queued = asyncio.Event()
        self._new_result = asyncio.Event()
        self._sent_samples = 0
        self._failures: dict[str, int] = {}
        self._dropped_samples: dict[str, int] = {}
        self._last_success: float | None = None
        self._failing = False
        self._clock_implausible = False

    async def run(self) -> None:
        """Scrape and send until cancelled; the outbox keeps whatever is not yet acknowledged."""
        self._store = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push-outbox")
        try:
            self._outbox = await self._in_store(Outbox.open, self._store_path)
            if self._outbox.queued_samples:
                log.info("push: %d samples queued before the restart", self._outbox.queued_samples)
                newest_ms = self._outbox.newest_ms
                # stamped ahead of the clock: the scrapes to come tell a jump back from a glitch
                if newest_ms is None or newest_ms <= self._clock() * 1000:
                    self._queued.set()
            async with aiohttp.ClientSession() as session:
                client = RemoteWriteClient(self._config, session)
                await asyncio.gather(self._scrape_loop(), self._send_loop(client))
        finally:
            if self._outbox is not None:
                self._store.submit(self._outbox.close)
                self._outbox = None
            self._store.shutdown(wait=True)

    def collect(self) -> Iterator[Metric]:
        """The netprobe_push_* metrics (prometheus_client Collector protocol)."""
        yield CounterMetricFamily(
            "netprobe_push_samples_total",
            "Samples the remote_write receiver accepted.",
            value=self._sent_samples,
        )
        failures = CounterMetricFamily(
            "netprobe_push_failures_total",
            "Failed remote_write requests and outbox writes, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(self._failures.items()):
            failures.add_metric([reason], count)
        yield failures
        dropped = CounterMetricFamily(
            "netprobe_push_dropped_samples_total",
            "Samples given up on: rejected by the receiver, expired, outbox overflow, "
            "stamped before a clock jump back (clock_backwards) or by a clock glitch (clock_jump).",
            labels=["reason"],
        )
        for reason, count in sorted(self._dropped_samples.items()):
            dropped.add_metric([reason], count)
        yield dropped
        if self._outbox is not None:
            yield GaugeMetricFamily(
                "netprobe_push_queue_samples",
                "Samples waiting in the outbox.",
                value=self._outbox.queued_samples,
            )
        if self._last_success is not None:
            yield GaugeMetricFamily(
                "netprobe_push_last_success_timestamp_seconds",
                "When the receiver last accepted a batch.",
                value=self._last_success,
            )

    async def _scrape_loop(self) -> None:
        # a random phase spreads a fleet's requests over the interval instead of one spike
        await asyncio.sleep(self._rng.uniform(0, self._config.interval))
        loop = asyncio.get_running_loop()
        next_scrape = loop.time()
        while True:
            await self._scrape_once()
            next_scrape += self._config.interval
            delay = next_scrape - loop.time()
            if delay < 0:  # fell behind (suspended machine): skip, do not burst
                next_scrape = loop.time() + self._config.interval
                delay = self._config.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_result.wait(), delay)
            if self._new_result.is_set():
                self._new_result.clear()
                next_scrape = loop.time()

    def observe(self, record: dict[str, Any]) -> None:
        self._new_result.set()

    async def _scrape_once(self) -> None:
        now = self._clock()
        offset_seconds = now - self._monotonic()
        timestamp_ms = int(now * 1000)
        if now < EARLIEST_PLAUSIBLE.timestamp():  # a Pi without RTC before NTP: 1970 or so
            if not self._clock_implausible:
                log.warning("push: the clock is not plausible yet; scrapes wait for time sync")
            self._clock_implausible = True
            return
        self._clock_implausible = False
        samples = scrape(self._registry, self._external_labels)
        # what a Prometheus scrape of this probe would record: the fleet dashboard counts probes
        # by `up`, and a probe that stops pushing goes stale there like a target that is down
        samples.append((canonical_labels({**self._external_labels, "__name__": "up"}.items()), 1.0))
        assert self._outbox is not None
        newest_ms = self._outbox.newest_ms
        holding = self._jumps.holding
        verdict = self._jumps.check(
            offset_seconds,
            (timestamp_ms, samples),
            behind_queue=newest_ms is not None and timestamp_ms <= newest_ms,
        )
        if verdict.dropped:
            dropped = sum(len(held) for _, held in verdict.dropped)
            self._count(self._dropped_samples, "clock_jump", dropped)
            log.warning("push: dropped %d samples stamped by a wall-clock glitch", dropped)
        if not holding and self._jumps.holding:
            log.warning(
                "push: the wall clock jumped; holding scrapes until %d in a row confirm it",
                CLOCK_CONFIRMATIONS,
            )
        try:
            if verdict.confirmed:
                log.warning("push: the wall-clock jump is confirmed; queueing by the new clock")
                first_ms = verdict.release[0][0]
                self._count_trimmed(await self._in_store(self._outbox.reanchor, first_ms))
            for release_ms, release_samples in verdict.release:
                trimmed = await self._in_store(
                    self._outbox.enqueue,
                    release_ms,
                    release_samples,
                    max_age_ms=int(self._config.max_outbox_age * 1000),
                    max_samples=self._config.max_outbox_samples,
                )
                self._count_trimmed(trimmed)
        except StoreError as exc:
            self._count(self._failures, "store", 1)
            log.warning("push: %s", exc)
            return
        if verdict.release:
            self._queued.set()

    async def _send_loop(self, client: RemoteWriteClient) -> None:
        attempt = 0
        while True:
            await self._queued.wait()
            self._queued.clear()
            while True:
                assert self._outbox is not None
                batch = await self._in_store(self._outbox.oldest, self._config.batch_samples)
                if batch is None:
                    break
                body = await asyncio.to_thread(_compressed_write_request, batch)
                verdict = await client.send(body)
                if verdict.action == "retry":
                    delay = self._backoff(attempt, verdict)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                await self._settle(batch, verdict)

    async def _settle(self, batch: Batch, verdict: Verdict) -> None:
        assert self._outbox is not None
        try:
            await self._in_store(self._outbox.remove, batch)
        except StoreError as exc:  # the batch goes out again later: a duplicate, not a loss
            self._count(self._failures, "store", 1)
            log.warning("push: %s", exc)
        if verdict.action == "sent":
            self._sent_samples += batch.sample_count
            self._last_success = self._clock()
            if self._failing:
                log.info("push: the receiver accepts samples again")
                self._failing = False
        else:
            self._count(self._failures, verdict.reason, 1)
            self._count(self._dropped_samples, verdict.reason, batch.sample_count)
            log.warning(
                "push: receiver refused %d samples for good (%s)",
                batch.sample_count,
                verdict.detail,
            )

    def _backoff(self, attempt: int, verdict: Verdict) -> float:
        self._count(self._failures, verdict.reason, 1)
        if not self._failing:  # one line per outage, not one per retry: SD cards wear out
            log.warning("push: will retry with backoff (%s)", verdict.detail)
            self._failing = True
        ceiling = min(self._config.max_backoff, self._config.min_backoff * 2**attempt)
        delay = self._rng.uniform(ceiling / 2, ceiling)
        if verdict.retry_after_seconds is not None:
            delay = max(delay, min(verdict.retry_after_seconds, self._config.max_backoff))
        return delay

    def _count_trimmed(self, trimmed: Trimmed) -> None:
        for reason, samples in trimmed.samples_by_reason.items():
            self._count(self._dropped_samples, reason, samples)
            log.warning("push: dropped %d queued samples (%s)", samples, reason)

    @staticmethod
    def _count(counters: dict[str, int], reason: str, amount: int) -> None:
        counters[reason] = counters.get(reason, 0) + amount

    async def _in_store(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # one thread owns the SQLite connection: calls never overlap and never block the loop
        assert self._store is not None, "run() owns the store thread"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store, lambda: function(*args, **kwargs))


def scrape(
    registry: CollectorRegistry, external_labels: dict[str, str]
) -> list[tuple[SeriesLabels, float]]:
    """Every sample of `registry` with its name and the external labels it does not already have."""
    samples = []
    for family in registry.collect():
        for sample in family.samples:
            if family.type in _CREATED_FAMILIES and sample.name.endswith("_created"):
                continue
            labels = {**external_labels, **sample.labels, "__name__": sample.name}
            samples.append((canonical_labels(labels.items()), float(sample.value)))
    return samples


def _compressed_write_request(batch: Batch) -> bytes:
    return compress(encode_write_request(batch.series()))
