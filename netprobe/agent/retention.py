"""Retention: results older than `store.retention` are removed after each cycle.

Retention(store, status).prune(config.store.retention_seconds, datetime.now(UTC))
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from netprobe.agent.metrics import AgentStatus
from netprobe.errors import StoreError
from netprobe.i18n import _
from netprobe.store import Store

log = logging.getLogger("netprobe.agent")


class Retention:
    """Prunes the store; a failure is counted as a store error and logged, never raised."""

    def __init__(self, store: Store, status: AgentStatus) -> None:
        self.store = store
        self.status = status

    def prune(self, retention_seconds: float, now: datetime) -> int:
        """Remove results started more than `retention_seconds` before `now`; how many."""
        cutoff = now - timedelta(seconds=retention_seconds)
        try:
            pruned = self.store.prune(cutoff.isoformat(timespec="microseconds"))
        except StoreError as exc:
            self.status.store_errors += 1
            log.error("%s", exc)
            return 0
        if pruned:
            log.info(_("retention: removed %d results older than %s"), pruned, cutoff.date())
        return pruned
