"""One measurement cycle of the agent: budget, gates, the line test, its conditions, and the
cloud drives right after it; every event of the run goes to the agent's sinks.

The cycle never runs two tests at once: drives are probed after the line test, back to back,
so each sees the line alone. A test in progress is marked in the store first, so a crash
leaves a trace that becomes an "aborted" result; a cancelled cycle (SIGTERM) stores that
result itself before it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netprobe.agent.budget import DataBudget
from netprobe.agent.gates import Gates, Link, cross_traffic_during, invalid_reason, read_link
from netprobe.agent.metrics import AgentStatus
from netprobe.config import AgentConfig, ServerConfig
from netprobe.errors import StoreError
from netprobe.events import HoldResult, Sink, result_event
from netprobe.i18n import _
from netprobe.measure.line import backend_for, measure_line
from netprobe.results import Conditions, DirectionResult, LineResult, Server, new_id, public_url
from netprobe.store import Store

log = logging.getLogger(__name__)


@dataclass
class Cycle:
    """Everything one cycle needs, handed in by the agent (tests hand in their own)."""

    config: AgentConfig
    store: Store
    status: AgentStatus
    sink: Sink  # the agent's sinks (store, metrics, push, log), fanned out
    interface: str | None
    sysfs_root: Path = Path("/sys/class/net")
    gates: Gates | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.gates is None:
            self.gates = Gates(self.config.gates, self.interface)

    def finish(self, record: dict[str, Any]) -> None:
        """The run's last event, with the completed record; then the month's data count."""
        self.sink.emit(result_event(record))
        self.refresh_data_used()

    def refresh_data_used(self) -> None:
        budget = DataBudget(self.config.budget)
        start = budget.period_start(self.now().astimezone(self.config.line_zone()))
        since = start.astimezone(UTC).isoformat(timespec="microseconds")
        self.status.data_used_bytes = self.store.bytes_since(since)
        self.status.data_budget_bytes = budget.monthly_bytes

    async def run(self, target: ServerConfig) -> LineResult | None:
        """One cycle; returns the stored line result, or None when the test was skipped."""
        config = self.config
        directions = config.measurement.test_directions()
        test_bytes = config.measurement.max_bytes * len(directions)
        self.refresh_data_used()
        if not DataBudget(config.budget).allows(self.status.data_used_bytes, test_bytes):
            self.status.tests_skipped["budget"] += 1
            log.warning(_("test skipped: the monthly data budget has no room for it"))
            return None
        assert self.gates is not None
        seen_holds: set[str] = set()

        def on_hold(gate: str, seconds: float) -> None:
            if gate not in seen_holds:
                seen_holds.add(gate)
                self.status.gate_holds[gate] += 1
                log.info(_("test held: %s gate"), gate)
            held = self.status.gate_hold_seconds
            held[gate] = held.get(gate, 0.0) + seconds

        clearance = await self.gates.wait_until_clear(on_hold)
        if not clearance.cleared:
            self.status.tests_skipped[clearance.gate or "gate"] += 1
            log.warning(
                _("test skipped: still held by the %s gate after the hold limit"), clearance.gate
            )
            return None
        link = read_link(self.interface, self.sysfs_root) if self.interface else None
        conditions = Conditions(
            interface=self.interface,
            link_type=link.link_type if link else None,
            link_speed_bytes_per_second=link.speed_bytes_per_second if link else None,
            cross_traffic_bytes_per_second=clearance.sample.cross_traffic_bytes_per_second,
            cpu_percent=clearance.sample.cpu_percent,
            held_seconds=clearance.held_seconds,
            hold_reasons=clearance.hold_reasons,
        )
        placeholder = self.aborted_placeholder(target, conditions)
        try:
            self.store.begin(placeholder.to_dict())
        except StoreError as exc:
            self.status.store_errors += 1
            log.error("%s", exc)
        return await self.measure(target, placeholder, link)

    def aborted_placeholder(self, target: ServerConfig, conditions: Conditions) -> LineResult:
        """The result stored if the test never finishes (crash, power cut, SIGTERM)."""
        config = self.config
        options = config.measurement.engine_options()
        method = options.method(target.protocol, 0, "receiver")
        result = LineResult(
            server=Server(url=target.url, name=target.name, protocol=target.protocol),
            conditions=conditions,
            valid=False,
            invalid_reason="aborted",
            outcome="aborted",
            peak=config.contract.peak().is_peak(self.now(), config.line_zone()),
            probe_id=config.probe.id,
            run_id=new_id(),
            started_at=self.now().isoformat(timespec="microseconds"),
        )
        for direction in config.measurement.test_directions():
            failed = DirectionResult.failed(
                direction, "aborted", "the agent stopped during the test", method
            )
            setattr(result, direction, failed)
        return result

    async def measure(
        self, target: ServerConfig, placeholder: LineResult, link: Link | None
    ) -> LineResult | None:
        config = self.config
        assert self.gates is not None
        before, start = self.gates.counter(), time.monotonic()
        log.info(_("line test starting against %s (%s)"), server_name(target), target.protocol)
        try:
            result = await measure_line(
                backend_for(target.protocol, target.url),
                config.measurement.test_directions(),
                config.measurement.engine_options(),
                HoldResult(self.sink),
            )
        except asyncio.CancelledError:
            log.warning(_("test aborted: the agent is stopping"))
            self.finish(placeholder.to_dict())
            raise
        seconds = time.monotonic() - start
        after = self.gates.counter()
        result.server.name = result.server.name or target.name
        result.id, result.run_id = placeholder.id, placeholder.run_id
        result.started_at, result.peak = placeholder.started_at, placeholder.peak
        result.probe_id = placeholder.probe_id
        result.conditions = placeholder.conditions
        test_bytes = sum(d.total_bytes for d in result.directions())
        during = None
        if before is not None and after is not None:
            loopback = link is not None and link.loopback
            during = cross_traffic_during(after - before, test_bytes, seconds, loopback=loopback)
            result.conditions.cross_traffic_during_bytes_per_second = during[0]
        if result.outcome == "failed":
            result.valid, result.invalid_reason = False, "failed"
        else:
            contracted = max(config.contract.download, config.contract.upload)
            reason = invalid_reason(config.gates, link, contracted, during)
            result.valid, result.invalid_reason = reason is None, reason
        self.finish(result.to_dict())
        await self.probe_drives(result)
        return result

    async def probe_drives(self, line: LineResult) -> None:
        """The configured cloud drives, right after the line test and never during it."""
        if not self.config.drives:
            return
        from netprobe.drives.run import probe_drives

        await probe_drives(
            self.config.drives,
            line=line,
            run_id=line.run_id,
            sink=self.sink,
            probe_id=line.probe_id,
        )
        self.refresh_data_used()


def server_name(target: ServerConfig | dict[str, Any]) -> str:
    """ "name (url)", or the url of a server without a name."""
    name, url = (
        (target.name, target.url)
        if isinstance(target, ServerConfig)
        else (
            target.get("name", ""),
            target.get("url", ""),
        )
    )
    url = public_url(url)  # a log line is no place for a password or a token in the URL
    return f"{name} ({url})" if name else url
