"""Compliance verdicts as Prometheus metrics, recomputed as results arrive.

    collector = ComplianceCollector(contract, config)
    registry.register(collector)
    collector.observe(result.to_dict())        # after each stored test

At scrape time the verdicts are recomputed over the last `config.window_days` days (only when a
result arrived or an old one left the window). A verdict that cannot be decided yet is
left out of `netprobe_compliance_verdict`; its valid test count is still exported. The collector
keeps only the fields the evaluators read, not the per-stream samples.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netprobe.compliance.campaign import plan_campaign
from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.policies import evaluate_all
from netprobe.compliance.series import parse_utc
from netprobe.compliance.verdict import Verdict
from netprobe.events import ResultObserver
from netprobe.results import DIRECTIONS


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    """The fields evaluators read."""
    slim: dict[str, Any] = {
        key: record.get(key)
        for key in ("id", "kind", "started_at", "valid", "invalid_reason")
        if key in record
    }
    for direction in DIRECTIONS:
        result = record.get(direction)
        if isinstance(result, dict):
            slim[direction] = {k: result.get(k) for k in ("ok", "bytes_per_second", "reason")}
    return slim


class ComplianceCollector(Collector, ResultObserver):
    """Exports the configured policies' verdicts over the stored and arriving results.

    `records` seeds it from the store at start-up; `clock` returns the current UTC time.
    """

    def __init__(
        self,
        contract: Contract,
        config: ComplianceConfig,
        records: Iterable[dict[str, Any]] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._contract = contract
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._records = [_slim(r) for r in records if r.get("kind", "line") == "line"]
        self._cached: list[Verdict] | None = None

    def observe(self, record: dict[str, Any]) -> None:
        """Take in a stored result (a `LineResult.to_dict()`); other kinds are ignored."""
        if record.get("kind", "line") != "line":
            return
        with self._lock:
            self._records.append(_slim(record))
            self._cached = None

    def verdicts(self) -> list[Verdict]:
        """The verdicts over the window ending now."""
        now = self._clock()
        since = now - timedelta(days=self._config.window_days)
        with self._lock:
            kept = [r for r in self._records if parse_utc(r["started_at"]) >= since]
            if self._cached is None or len(kept) != len(self._records):
                self._records = kept
                self._cached = evaluate_all(kept, self._contract, self._config)
            return self._cached

    def collect(self) -> Iterator[Metric]:
        verdict = GaugeMetricFamily(
            "netprobe_compliance_verdict",
            "Policy verdict over the evaluation window: 1 compliant, 0 deviation (absent: undecided).",
            labels=["policy", "direction"],
        )
        share = GaugeMetricFamily(
            "netprobe_compliance_share_ratio",
            "Share of valid tests reaching the policy's headline threshold.",
            labels=["policy", "direction"],
        )
        valid = GaugeMetricFamily(
            "netprobe_compliance_valid_tests",
            "Valid tests the policy's verdict is based on.",
            labels=["policy", "direction"],
        )
        for v in self.verdicts():
            labels = [v.policy, v.direction]
            if v.compliant is not None:
                verdict.add_metric(labels, 1.0 if v.compliant else 0.0)
            if v.share is not None:
                share.add_metric(labels, v.share)
            valid.add_metric(labels, float(v.valid_tests))
        yield from (verdict, share, valid)
        if "de-bnetza" in self._config.policies or self._config.de_bnetza.campaign.enabled:
            yield from self._campaign()

    def _campaign(self) -> Iterator[Metric]:
        rules = self._config.de_bnetza.campaign
        with self._lock:
            records = list(self._records)
        plan = plan_campaign(records, self._clock(), rules, self._config.zone())
        done = GaugeMetricFamily(
            "netprobe_campaign_measurements",
            "Measurements in the BNetzA campaign in progress (or the last complete one).",
            labels=["direction"],
        )
        for direction in DIRECTIONS:
            done.add_metric([direction], float(plan.measurements(direction)))
        yield done
        yield GaugeMetricFamily(
            "netprobe_campaign_required_measurements",
            "Measurements a complete BNetzA campaign needs.",
            value=float(plan.required),
        )
