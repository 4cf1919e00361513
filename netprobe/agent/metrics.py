"""The line and agent metric families (docs/method.md §6), produced at scrape time.

`LineMetrics` is the metric source for line tests: the agent hands it every stored line
result; it keeps the last figures and the counters. `AgentMetrics` reads the agent's own
`AgentStatus` (identity, contract, gates, budget, reloads, store). Both are `MetricSource`s:

    line = LineMetrics()
    line.observe(sealed_record)
    registry.register(SourcesCollector(lambda: [AgentMetrics(status), line]))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from netprobe import __version__
from netprobe.events import ResultObserver


def epoch_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def direction_outcome(record: dict[str, Any], part: dict[str, Any]) -> str:
    """ok | failed | invalid | aborted for one direction of a stored line result."""
    if record.get("outcome") == "aborted":
        return "aborted"
    if not part.get("ok"):
        return "failed"
    return "ok" if record.get("valid", True) else "invalid"


class LineMetrics(ResultObserver):
    """Last valid rates, latencies, timestamps and the byte/second/test counters of line tests."""

    def __init__(self) -> None:
        self.rate: dict[str, float] = {}
        self.last_test: dict[str, float] = {}
        self.last_success: dict[str, float] = {}
        self.window_bytes: Counter[str] = Counter()
        self.window_seconds: dict[str, float] = {}
        self.tests: Counter[tuple[str, str]] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.invalid: Counter[str] = Counter()
        self.idle_latency: float | None = None
        self.loaded_latency: dict[str, float] = {}

    def observe(self, record: dict[str, Any]) -> None:
        if record.get("kind") != "line":
            return
        when = epoch_seconds(record["started_at"])
        if record.get("outcome") != "aborted" and record.get("valid") is False:
            self.invalid[str(record.get("invalid_reason") or "unknown")] += 1
        if record.get("idle_latency_seconds") is not None:
            self.idle_latency = float(record["idle_latency_seconds"])
        for direction in ("download", "upload"):
            part = record.get(direction)
            if not isinstance(part, dict):
                continue
            outcome = direction_outcome(record, part)
            self.tests[direction, outcome] += 1
            self.last_test[direction] = when
            if outcome == "failed":
                self.failures[direction, str(part.get("reason") or "unknown")] += 1
            if outcome != "ok" or part.get("bytes_per_second") is None:
                continue
            self.rate[direction] = float(part["bytes_per_second"])
            self.last_success[direction] = when
            self.window_bytes[direction] += int(part.get("bytes") or 0)
            self.window_seconds[direction] = self.window_seconds.get(direction, 0.0) + float(
                part.get("window_seconds") or 0.0
            )
            if part.get("loaded_latency_seconds") is not None:
                self.loaded_latency[direction] = float(part["loaded_latency_seconds"])

    def collect(self) -> Iterable[Metric]:
        def gauge(name: str, doc: str, values: dict[str, float]) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["direction"])
            for direction, value in sorted(values.items()):
                family.add_metric([direction], value)
            return family

        yield gauge(
            "netprobe_line_rate_bytes_per_second",
            "Steady TCP payload rate of the last valid line test.",
            self.rate,
        )
        yield gauge(
            "netprobe_line_last_test_timestamp_seconds",
            "Start of the last line test, whatever its outcome.",
            self.last_test,
        )
        yield gauge(
            "netprobe_line_last_success_timestamp_seconds",
            "Start of the last valid, successful line test.",
            self.last_success,
        )
        window_bytes = CounterMetricFamily(
            "netprobe_line_window_bytes",
            "Payload bytes inside the measuring windows of valid tests; divide by window seconds.",
            labels=["direction"],
        )
        window_seconds = CounterMetricFamily(
            "netprobe_line_window_seconds",
            "Seconds of measuring windows of valid tests.",
            labels=["direction"],
        )
        for direction in sorted(self.window_seconds):
            window_bytes.add_metric([direction], self.window_bytes[direction])
            window_seconds.add_metric([direction], self.window_seconds[direction])
        yield window_bytes
        yield window_seconds
        tests = CounterMetricFamily(
            "netprobe_line_tests", "Line tests by outcome.", labels=["direction", "outcome"]
        )
        for (direction, outcome), count in sorted(self.tests.items()):
            tests.add_metric([direction, outcome], count)
        yield tests
        failures = CounterMetricFamily(
            "netprobe_line_failures", "Failed line tests by reason.", labels=["direction", "reason"]
        )
        for (direction, reason), count in sorted(self.failures.items()):
            failures.add_metric([direction, reason], count)
        yield failures
        invalid = CounterMetricFamily(
            "netprobe_line_invalid", "Line tests that did not count, by reason.", labels=["reason"]
        )
        for reason, count in sorted(self.invalid.items()):
            invalid.add_metric([reason], count)
        yield invalid
        if self.idle_latency is not None:
            yield GaugeMetricFamily(
                "netprobe_line_latency_idle_seconds",
                "Round-trip time on an idle connection before the last line test.",
                value=self.idle_latency,
            )
        yield gauge(
            "netprobe_line_latency_loaded_seconds",
            "Round-trip time under load during the last valid line test.",
            self.loaded_latency,
        )


@dataclass
class AgentStatus:
    """What the agent knows about itself, read by AgentMetrics at scrape time."""

    probe_id: str = ""
    operator: str = ""
    plan: str = ""
    contract: dict[tuple[str, str], float] = field(default_factory=dict)
    gate_holds: Counter[str] = field(default_factory=Counter)
    gate_hold_seconds: dict[str, float] = field(default_factory=dict)
    data_used_bytes: int = 0
    data_budget_bytes: int | None = None
    tests_skipped: Counter[str] = field(default_factory=Counter)
    reload_successful: bool = True
    reload_success_timestamp: float = 0.0
    store_errors: int = 0
    push_loop_failures: int = 0
    push_loop_error: str | None = None  # why the push loop is down now, if it is
    clock_plausible: bool = True
    unstored_results: int = 0  # results kept in memory because the store refused them
    key_fingerprint: str = ""  # the probe key a reader pins (`netprobe evidence key`)

    def problems(self) -> list[str]:
        """What keeps the agent from doing its job now, for /-/healthy."""
        found = []
        if self.push_loop_error is not None:
            found.append(f"push: {self.push_loop_error}")
        if not self.clock_plausible:
            found.append("clock: not yet plausible (waiting for time sync)")
        return found


class AgentMetrics(ResultObserver):
    """The agent's own families; it observes nothing, the agent updates its status directly."""

    def __init__(self, status: AgentStatus) -> None:
        self.status = status

    def observe(self, record: dict[str, Any]) -> None:
        return None

    def collect(self) -> Iterable[Metric]:
        s = self.status
        build = GaugeMetricFamily(
            "netprobe_build_info", "netprobe version running.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build
        probe = GaugeMetricFamily(
            "netprobe_probe_info",
            "Probe identity and plan.",
            labels=["probe_id", "operator", "plan"],
        )
        probe.add_metric([s.probe_id, s.operator, s.plan], 1)
        yield probe
        contract = GaugeMetricFamily(
            "netprobe_contract_rate_bytes_per_second",
            "Contracted rate (payload bytes/s) by kind.",
            labels=["direction", "kind"],
        )
        for (direction, kind), value in sorted(s.contract.items()):
            contract.add_metric([direction, kind], value)
        yield contract
        holds = CounterMetricFamily(
            "netprobe_gate_holds", "Tests held by a validity gate.", labels=["gate"]
        )
        hold_seconds = CounterMetricFamily(
            "netprobe_gate_hold_seconds", "Seconds tests were held by a gate.", labels=["gate"]
        )
        for gate in ("cross_traffic", "cpu"):
            holds.add_metric([gate], s.gate_holds[gate])
            hold_seconds.add_metric([gate], s.gate_hold_seconds.get(gate, 0.0))
        yield holds
        yield hold_seconds
        yield GaugeMetricFamily(
            "netprobe_data_used_bytes",
            "Bytes tests used in the current budget month.",
            value=s.data_used_bytes,
        )
        if s.data_budget_bytes is not None:
            yield GaugeMetricFamily(
                "netprobe_data_budget_bytes", "Monthly data budget.", value=s.data_budget_bytes
            )
        skipped = CounterMetricFamily(
            "netprobe_tests_skipped", "Scheduled tests not run, by reason.", labels=["reason"]
        )
        for reason, count in sorted(s.tests_skipped.items()):
            skipped.add_metric([reason], count)
        yield skipped
        yield GaugeMetricFamily(
            "netprobe_config_last_reload_successful",
            "Whether the last configuration reload worked (1) or was refused (0).",
            value=1 if s.reload_successful else 0,
        )
        yield GaugeMetricFamily(
            "netprobe_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            value=s.reload_success_timestamp,
        )
        yield CounterMetricFamily(
            "netprobe_store_errors", "Failed writes to the results store.", value=s.store_errors
        )
        yield CounterMetricFamily(
            "netprobe_push_loop_failures",
            "Times the remote_write loop stopped on an error and was restarted.",
            value=s.push_loop_failures,
        )
        yield GaugeMetricFamily(
            "netprobe_clock_plausible",
            "Whether the system clock is plausible (1); tests wait while it is not (0).",
            value=1 if s.clock_plausible else 0,
        )
        yield GaugeMetricFamily(
            "netprobe_store_unstored_results",
            "Results the store refused (full disk, read-only, key problem), kept to write later.",
            value=s.unstored_results,
        )
        if s.key_fingerprint:
            key = GaugeMetricFamily(
                "netprobe_evidence_key_info",
                "Fingerprint of the probe key that signs the results.",
                labels=["fingerprint"],
            )
            key.add_metric([s.key_fingerprint], 1)
            yield key
