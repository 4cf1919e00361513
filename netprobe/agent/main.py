"""The agent's main loop: load the configuration, open the store, serve metrics, and run one
test at a time on a randomised schedule until SIGTERM.

    asyncio.run(run_agent(Path("/etc/netprobe/agent.yml")))

The agent only wires its parts, each with one job and testable alone: `Lifecycle` (the
configuration in force, reload, stop), `HttpFace` (exporter, embedded server), `Planner`
(schedule and BNetzA campaign), `Cycle` (one test), `Retention` (pruning), and its sinks
(`Agent.sinks`: store, log, metric sources, push) that every run's events fan out to.

SIGHUP and POST /-/reload re-read the configuration; SIGTERM or SIGINT aborts a running test,
records it as aborted, closes the store and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from netprobe.agent.clock import wait_for_clock
from netprobe.agent.face import HttpFace
from netprobe.agent.gates import default_interface
from netprobe.agent.lifecycle import Lifecycle
from netprobe.agent.metrics import AgentMetrics, AgentStatus, LineMetrics
from netprobe.agent.retention import Retention
from netprobe.agent.run import Cycle
from netprobe.agent.scheduler import Planner
from netprobe.agent.sinks import LogSink, StoreSink
from netprobe.config import AgentConfig, ServerConfig, load_config, parse_listen
from netprobe.drives.metrics import DriveMetrics
from netprobe.errors import ConfigError, StoreError
from netprobe.events import Fanout, Sink, result_event
from netprobe.exporter import MetricSource
from netprobe.i18n import _
from netprobe.store import Store

if TYPE_CHECKING:
    from netprobe.push.pusher import Pusher

log = logging.getLogger("netprobe.agent")

PUSH_RETRY_MIN_SECONDS = 5.0
PUSH_RETRY_MAX_SECONDS = 300.0


class Agent:
    """One agent process: its parts, its store, its metric sources and sinks."""

    def __init__(
        self,
        config_path: Path,
        config: AgentConfig,
        *,
        listen: str | None = None,
        sysfs_root: Path = Path("/sys/class/net"),
        rng: random.Random | None = None,
    ) -> None:
        self.status = AgentStatus(reload_success_timestamp=time.time())
        self.life = Lifecycle(config_path, config, self.status)
        self.life.on_change.append(lambda _config: self.start_compliance())
        self.life.on_stop.append(self.cancel_cycle)
        self.listen = listen or config.exporter.listen
        self.sysfs_root = sysfs_root
        self.rng = rng or random.Random()
        self.line_metrics = LineMetrics()
        self.drive_metrics = DriveMetrics()
        self.compliance_metrics: Any = None  # a ComplianceCollector once the store is open
        self.face = HttpFace(CollectorRegistry(auto_describe=True))
        self.pusher: Pusher | None = None
        self.store: Store | None = None
        self.cycle_task: asyncio.Task[Any] | None = None
        self.embedded: ServerConfig | None = None
        self.turn = 0

    @property
    def config(self) -> AgentConfig:
        return self.life.config

    @property
    def stopping(self) -> asyncio.Event:
        return self.life.stopping

    @property
    def targets(self) -> list[ServerConfig]:
        """The servers tests rotate through."""
        return [*self.config.servers, *([self.embedded] if self.embedded else [])]

    @property
    def sources(self) -> list[MetricSource]:
        """Every area's metric source: agent, line tests, drives, compliance verdicts."""
        sources: list[MetricSource] = [
            AgentMetrics(self.status),
            self.line_metrics,
            self.drive_metrics,
        ]
        if self.compliance_metrics is not None:
            sources.append(self.compliance_metrics)
        return sources

    @property
    def sinks(self) -> Fanout:
        """Where every run's events go: the store first (it seals), then the rest."""
        assert self.store is not None
        sinks: list[Sink] = [StoreSink(self.store, self.status), LogSink(), *self.sources]
        if self.pusher is not None:
            sinks.append(self.pusher)
        return Fanout(sinks)

    async def reload(self) -> str | None:
        return await self.life.reload()

    def stop(self) -> None:
        self.life.stop()

    def cancel_cycle(self) -> None:
        if self.cycle_task is not None:
            self.cycle_task.cancel()

    def start_compliance(self) -> None:
        """Verdicts over the stored line results of the compliance window, then live."""
        if self.store is None:
            return
        from netprobe.compliance.contract import Contract
        from netprobe.compliance.metrics import ComplianceCollector

        compliance = self.config.located_compliance()
        since = datetime.now(UTC) - timedelta(days=compliance.window_days)
        self.compliance_metrics = ComplianceCollector(
            Contract.from_config(self.config.contract),
            compliance,
            records=self.store.records(kind="line", since=since.isoformat()),
        )

    async def push_forever(self) -> None:
        """remote_write of this agent's own metrics, when `push:` is configured.

        A loop that stops on an error (an outbox that cannot be opened, a full disk) is logged,
        counted, shown by /-/healthy and restarted after a growing pause (5 s up to 5 min).
        """
        pause_seconds = PUSH_RETRY_MIN_SECONDS
        while not self.stopping.is_set():
            try:
                await self.push_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.push_loop_failures += 1
                self.status.push_loop_error = str(exc) or type(exc).__name__
                log.error("push loop stopped, retrying in %.0f s: %s", pause_seconds, exc)
                await self.sleep(pause_seconds)
                pause_seconds = min(2 * pause_seconds, PUSH_RETRY_MAX_SECONDS)
            else:
                return

    async def push_once(self) -> None:
        from netprobe.push.pusher import Pusher

        assert self.config.push is not None and self.store is not None
        registry = self.face.registry
        self.pusher = Pusher(
            self.config.push,
            registry,
            store_path=str(self.store.path.with_name("push-outbox.db")),
            probe_id=self.config.probe.id,
        )
        registry.register(self.pusher)
        try:
            self.status.push_loop_error = None
            await self.pusher.run()
        finally:
            registry.unregister(self.pusher)
            self.pusher = None

    def interface(self) -> str | None:
        return self.config.probe.interface or default_interface()

    async def run(self) -> None:
        config = self.config
        self.store = Store(
            Path(config.store.path), Path(config.store.key_file) if config.store.key_file else None
        )
        self.status.key_fingerprint = self.store.key_fingerprint() or ""

        def not_recovered(exc: StoreError) -> None:
            # The mark stays for the next start; the agent starts all the same.
            self.status.store_errors += 1
            log.error("%s", exc)

        for record in self.store.recover_interrupted(not_recovered):
            log.warning(_("recorded test %s as aborted: the agent stopped during it"), record["id"])
            Fanout(self.sources).emit(result_event(record))  # stored already
        self.cycle().refresh_data_used()
        self.start_compliance()
        closers: list[Callable[[], Awaitable[None]]] = []
        pushing: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        try:
            exporter = await self.face.start_exporter(lambda: self.sources, self.life, self.listen)
            closers.append(exporter.close)
            if config.embedded_server is not None:
                runner, self.embedded = await self.face.start_embedded_server(
                    config.embedded_server
                )
                closers.append(runner.cleanup)
            if config.push is not None:
                pushing = asyncio.ensure_future(self.push_forever())
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
            for stop_signal in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(stop_signal, self.stop)
            await self.schedule_loop()
        finally:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if pushing is not None:
                pushing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pushing
            for close in reversed(closers):
                await close()
            self.store.close()
            log.info(_("stopped; store closed"))

    def planner(self) -> Planner:
        assert self.store is not None
        return Planner(lambda: self.config, self.store, self.status, self.rng)

    def with_campaign(self, delay: float, now: datetime | None = None) -> float:
        return self.planner().with_campaign(delay, now)

    async def sleep(self, seconds: float) -> None:
        """Sleep until the next test is due or the agent stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def schedule_loop(self) -> None:
        delay = self.planner().first_delay(datetime.now(UTC))
        while not self.stopping.is_set():
            log.info(_("next test in %.0f s"), delay)
            await self.sleep(delay)
            if self.stopping.is_set():
                return
            await self.run_one_cycle()
            delay = self.planner().next_delay(datetime.now(UTC))

    def cycle(self) -> Cycle:
        """One measurement cycle under the configuration in force now."""
        assert self.store is not None
        return Cycle(
            self.config,
            self.store,
            self.status,
            self.sinks,
            self.interface(),
            sysfs_root=self.sysfs_root,
        )

    async def run_one_cycle(self) -> None:
        assert self.store is not None
        if not await wait_for_clock(self.status, now=lambda: datetime.now(UTC), sleep=self.sleep):
            return
        if self.stopping.is_set():
            return
        target = self.targets[self.turn % len(self.targets)]
        self.turn += 1
        self.cycle_task = asyncio.ensure_future(self.cycle().run(target))
        try:
            await self.cycle_task
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
        except Exception:
            log.exception("measurement cycle failed")
        finally:
            self.cycle_task = None
        Retention(self.store, self.status).prune(
            self.config.store.retention_seconds, datetime.now(UTC)
        )
        trim_heap()


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system; False where the C library cannot.

    glibc keeps what a test freed (socket buffers, parsed answers, the threads' arenas) for
    reuse; between hourly tests that is resident memory held for nothing. musl (OpenWrt) has
    no malloc_trim and gives freed memory back by itself.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


async def run_agent(config_path: Path, listen: str | None = None) -> None:
    """Run until stopped; ConfigError when the file is not usable (nothing started then)."""
    config = load_config(config_path)
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(str(exc).removeprefix("listen: "), key="--listen") from None
    await Agent(config_path, config, listen=listen).run()
