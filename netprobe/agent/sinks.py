"""The agent's own sinks of run events: the store, which seals each result, and the log.

The metric sources (`LineMetrics`, `DriveMetrics`, `ComplianceCollector`) and the push loop
are sinks too; `Agent.sinks` lists them all, store first so a result is sealed before the
others see it:

    sinks = Fanout([StoreSink(store, status), LogSink(), line_metrics, drive_metrics])
    sinks.emit(result_event(record))
"""

from __future__ import annotations

import logging
from typing import Any

from netprobe.agent.metrics import AgentStatus
from netprobe.agent.run import server_name
from netprobe.drives.result import DriveResult
from netprobe.drives.result import describe as describe_transfer
from netprobe.errors import StoreError
from netprobe.events import ResultObserver
from netprobe.i18n import _
from netprobe.store import Store
from netprobe.units import format_rate

log = logging.getLogger("netprobe.agent")


class StoreSink(ResultObserver):
    """Seals and stores every finished record; a store that fails is counted and logged."""

    def __init__(self, store: Store, status: AgentStatus) -> None:
        self.store = store
        self.status = status

    def observe(self, record: dict[str, Any]) -> None:
        # The evidence block is added to the event's record in place: the sinks after this
        # one (metrics, push, log) see the sealed record.
        try:
            record.update(self.store.add(record))
        except StoreError as exc:
            self.status.store_errors += 1
            log.error("%s", exc)
        # Kept in memory by the store until it takes them (full disk, read-only, key problem).
        self.status.unstored_results = len(self.store.pending)


class LogSink(ResultObserver):
    """One readable log line per finished line test or drive probe; a failure is a warning."""

    def observe(self, record: dict[str, Any]) -> None:
        if record.get("kind") == "line":
            level = logging.WARNING if record.get("outcome") == "failed" else logging.INFO
            server = server_name(record.get("server") or {})
            log.log(level, "%s: %s", server, describe_line(record))
        elif record.get("kind") == "drive":
            result = DriveResult.from_dict({k: v for k, v in record.items() if k != "evidence"})
            for transfer in result.directions():
                log.info(_("drive %s"), describe_transfer(result, transfer))


def describe_line(record: dict[str, Any]) -> str:
    """One log line a person can read, in the language in use; a failure says why."""
    parts = []
    for direction in ("download", "upload"):
        part = record.get(direction)
        if not isinstance(part, dict):
            continue
        rate = part.get("bytes_per_second")
        if part.get("ok") and rate:
            figure = format_rate(rate)
        else:
            figure = _("failed: {reason}").format(reason=part.get("error") or part.get("reason"))
        parts.append(f"{_(direction)} {figure}")
    verdict = (
        _("valid")
        if record.get("valid", True)
        else _("not valid ({reason})").format(reason=record.get("invalid_reason"))
    )
    return _("line test {outcome}: {parts}; {verdict}").format(
        outcome=_(str(record.get("outcome"))), parts=", ".join(parts), verdict=verdict
    )
