"""The agent's main loop: load the configuration, open the store, serve metrics, and run one
test at a time on a randomised schedule until SIGTERM.

    asyncio.run(run_agent(Path("/etc/netprobe/agent.yml")))

With `compliance.de_bnetza.campaign.enabled`, each test also waits for the BNetzA campaign's
next conforming slot (see `scheduler.campaign_delay`) and the progress is logged.

SIGHUP and POST /-/reload re-read the configuration; a bad file keeps the running one (logged,
and `netprobe_config_last_reload_successful` drops to 0). SIGTERM or SIGINT aborts a running
test, records it as aborted, closes the store and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector

from netprobe.agent.gates import default_interface
from netprobe.agent.metrics import AgentMetrics, AgentStatus, LineMetrics
from netprobe.agent.run import Cycle
from netprobe.agent.scheduler import (
    campaign_delay,
    describe_campaign,
    first_delay,
    next_interval,
)
from netprobe.compliance.campaign import plan_campaign
from netprobe.config import AgentConfig, ServerConfig, load_config, parse_listen
from netprobe.drives.metrics import DriveMetrics
from netprobe.errors import ConfigError, StoreError
from netprobe.exporter import (
    BasicAuth,
    MetricSource,
    SourcesCollector,
    WebConfig,
    build_app,
    load_web_config,
    ssl_context,
    start_exporter,
)
from netprobe.store import Store

log = logging.getLogger("netprobe.agent")


class Agent:
    """One agent process: its configuration, store, metric sources and schedule."""

    def __init__(
        self,
        config_path: Path,
        config: AgentConfig,
        *,
        listen: str | None = None,
        sysfs_root: Path = Path("/sys/class/net"),
        rng: random.Random | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.listen = listen or config.exporter.listen
        self.sysfs_root = sysfs_root
        self.rng = rng or random.Random()
        self.status = AgentStatus(reload_success_timestamp=time.time())
        self.line_metrics = LineMetrics()
        self.drive_metrics = DriveMetrics()
        self.compliance_metrics: MetricSource | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.auth = BasicAuth({})
        self.store: Store | None = None
        self.stopping = asyncio.Event()
        self.cycle_task: asyncio.Task[Any] | None = None
        self.embedded: ServerConfig | None = None
        self.turn = 0
        web_config = (
            load_web_config(Path(config.exporter.web_config))
            if config.exporter.web_config
            else None
        )
        # TLS is set up once, when the exporter starts; users change on reload.
        self.tls = web_config.tls_server_config if web_config else None
        self.apply(config, web_config)

    # -- configuration --------------------------------------------------------------------
    def apply(self, config: AgentConfig, web_config: WebConfig | None) -> None:
        self.config = config
        self.status.probe_id = config.probe.id
        self.status.operator, self.status.plan = config.contract.operator, config.contract.plan
        self.status.contract = {
            (direction, kind): getattr(rates, direction)
            for kind, rates in config.contract.rates().items()
            for direction in ("download", "upload")
        }
        self.auth = BasicAuth(web_config.basic_auth_users if web_config else {})

    @property
    def targets(self) -> list[ServerConfig]:
        """The servers tests rotate through."""
        return [*self.config.servers, *([self.embedded] if self.embedded else [])]

    async def reload(self) -> str | None:
        """Re-read the configuration file; None when it took effect, else why it did not."""
        try:
            config = load_config(self.config_path)
            web_config = (
                load_web_config(Path(config.exporter.web_config))
                if config.exporter.web_config
                else None
            )
        except ConfigError as exc:
            self.status.reload_successful = False
            log.error("configuration reload failed, keeping the running configuration: %s", exc)
            return str(exc)
        for section, needs_restart in (
            ("store", config.store.path != self.config.store.path),
            ("exporter.listen", config.exporter.listen != self.config.exporter.listen),
            ("embedded_server", config.embedded_server != self.config.embedded_server),
            ("push", config.push != self.config.push),
        ):
            if needs_restart:
                log.warning("%s changed: takes effect when the agent restarts", section)
        self.apply(config, web_config)
        if self.store is not None:
            self.start_compliance()
        self.status.reload_successful = True
        self.status.reload_success_timestamp = time.time()
        log.info("configuration reloaded from %s", self.config_path)
        return None

    # -- life -----------------------------------------------------------------------------
    def observe(self, record: dict[str, Any]) -> None:
        for source in self.sources:
            try:
                source.observe(record)
            except Exception:
                log.exception("metric source %s failed on a result", type(source).__name__)

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

    def start_compliance(self) -> None:
        """Verdicts over the stored line results of the compliance window, then live."""
        from netprobe.compliance.contract import Contract
        from netprobe.compliance.metrics import ComplianceCollector

        assert self.store is not None
        contract = self.config.contract
        compliance = self.config.located_compliance()
        since = datetime.now(UTC) - timedelta(days=compliance.window_days)
        self.compliance_metrics = ComplianceCollector(
            Contract.from_rates(
                download=contract.download,
                upload=contract.upload,
                download_normal=contract.normal.download if contract.normal else None,
                upload_normal=contract.normal.upload if contract.normal else None,
                download_minimum=contract.minimum.download if contract.minimum else None,
                upload_minimum=contract.minimum.upload if contract.minimum else None,
            ),
            compliance,
            records=self.store.records(kind="line", since=since.isoformat()),
        )

    async def push_forever(self) -> None:
        """remote_write of this agent's own metrics, when `push:` is configured."""
        from netprobe.push.pusher import Pusher

        assert self.config.push is not None and self.store is not None
        pusher = Pusher(
            self.config.push,
            self.registry,
            store_path=str(self.store.path.with_name("push-outbox.db")),
            probe_id=self.config.probe.id,
        )
        self.registry.register(pusher)
        try:
            await pusher.run()
        finally:
            self.registry.unregister(pusher)

    def interface(self) -> str | None:
        return self.config.probe.interface or default_interface()

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        log.info("stopping")
        self.stopping.set()
        if self.cycle_task is not None:
            self.cycle_task.cancel()

    async def run(self) -> None:
        config = self.config
        self.store = Store(
            Path(config.store.path), Path(config.store.key_file) if config.store.key_file else None
        )
        self.status.key_fingerprint = self.store.key_fingerprint() or ""
        for record in self.store.recover_interrupted(self.count_store_error):
            log.warning("recorded test %s as aborted: the agent stopped during it", record["id"])
            self.observe(record)
        self.cycle().refresh_data_used()
        self.start_compliance()
        runners: list[web.AppRunner] = []
        pushing: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        try:
            runners.append(await self.start_exporter())
            if config.embedded_server is not None:
                runners.append(await self.start_embedded_server())
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
            for runner in reversed(runners):
                await runner.cleanup()
            self.store.close()
            log.info("stopped; store closed")

    def count_store_error(self, exc: StoreError) -> None:
        self.status.store_errors += 1
        log.error("%s", exc)

    async def start_exporter(self) -> web.AppRunner:
        self.registry.register(SourcesCollector(lambda: self.sources))
        ProcessCollector(registry=self.registry)
        app = build_app(
            self.registry,
            reload=self.reload,
            probe_id=lambda: self.config.probe.id,
            auth=lambda: self.auth,
        )
        tls = ssl_context(self.tls) if self.tls else None
        host, port = parse_listen(self.listen)
        runner = await start_exporter(app, host, port, tls)
        scheme = "https" if tls else "http"
        log.info("metrics on %s://%s:%d/metrics", scheme, host, runner.addresses[0][1])
        return runner

    async def start_embedded_server(self) -> web.AppRunner:
        from netprobe.serve.app import bound_port, start_server
        from netprobe.serve.state import ServerLimits

        embedded = self.config.embedded_server
        assert embedded is not None
        limits = ServerLimits(
            download_rate_bytes_per_second=embedded.download_rate,
            upload_rate_bytes_per_second=embedded.upload_rate,
        )
        runner = await start_server(embedded.host, embedded.port, limits)
        url = f"http://{embedded.host}:{bound_port(runner)}"
        self.embedded = ServerConfig(url, "native", "embedded")
        log.info("embedded test server on %s", url)
        return runner

    def seconds_since_last_test(self) -> float | None:
        assert self.store is not None
        last = self.store.last("line")
        if last is None:
            return None
        started = datetime.fromisoformat(last["started_at"])
        return max((datetime.now(UTC) - started).total_seconds(), 0.0)

    async def sleep(self, seconds: float) -> None:
        """Sleep until the next test is due or the agent stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def with_campaign(self, delay: float, now: datetime | None = None) -> float:
        """`delay`, held back to the campaign's next conforming slot when campaign mode is on.

        Planned afresh from the stored line results of the compliance window each time, so a
        restart, a skipped test or an invalid one simply moves the slot.
        """
        compliance = self.config.located_compliance()
        rules = compliance.de_bnetza.campaign
        if not rules.enabled:
            return delay
        assert self.store is not None
        now = now or datetime.now(UTC)
        since = now - timedelta(days=compliance.window_days)
        try:
            records = self.store.records(
                kind="line", since=since.isoformat(timespec="microseconds")
            )
        except StoreError as exc:
            self.status.store_errors += 1
            log.error("campaign not planned: %s", exc)
            return delay
        plan = plan_campaign(records, now, rules, compliance.zone())
        log.info("%s", describe_campaign(plan, rules, compliance.zone()))
        return campaign_delay(delay, plan, now)

    async def schedule_loop(self) -> None:
        delay = first_delay(self.config.schedule, self.seconds_since_last_test(), self.rng)
        delay = self.with_campaign(delay)
        while not self.stopping.is_set():
            log.info("next test in %.0f s", delay)
            await self.sleep(delay)
            if self.stopping.is_set():
                return
            await self.run_one_cycle()
            delay = self.with_campaign(next_interval(self.config.schedule, self.rng))

    def cycle(self) -> Cycle:
        """One measurement cycle under the configuration in force now."""
        assert self.store is not None
        return Cycle(
            self.config,
            self.store,
            self.status,
            self.observe,
            self.interface(),
            sysfs_root=self.sysfs_root,
        )

    async def run_one_cycle(self) -> None:
        assert self.store is not None
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
        cutoff = datetime.now(UTC) - timedelta(seconds=self.config.store.retention_seconds)
        try:
            pruned = self.store.prune(cutoff.isoformat(timespec="microseconds"))
        except StoreError as exc:
            self.status.store_errors += 1
            log.error("%s", exc)
            return
        if pruned:
            log.info("retention: removed %d results older than %s", pruned, cutoff.date())


async def run_agent(config_path: Path, listen: str | None = None) -> None:
    """Run until stopped; ConfigError when the file is not usable (nothing started then)."""
    config = load_config(config_path)
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(str(exc).removeprefix("listen: "), key="--listen") from None
    await Agent(config_path, config, listen=listen).run()
