"""Verdicts exported as Prometheus metrics, recomputed as results arrive."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from compliance_records import record
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netprobe.compliance.config import POLICY_NAMES, CnMiitPolicy, ComplianceConfig, PeakWindow
from netprobe.compliance.contract import Contract
from netprobe.compliance.metrics import ComplianceCollector

CONTRACT = Contract.from_rates(download=100e6 / 8, upload=40e6 / 8)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scrape(registry: CollectorRegistry) -> tuple[str, dict[tuple[str, tuple[str, ...]], float]]:
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(s.labels[k] for k in ("policy", "direction") if k in s.labels)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def evening_tests(day: int, down: float, n: int = 10) -> list[dict[str, object]]:
    start = datetime(2026, 3, day, 10, 0, tzinfo=UTC)
    return [record(start + timedelta(minutes=30 * k), down=down) for k in range(n)]


def collector_with(
    config: ComplianceConfig, clock: Clock
) -> tuple[ComplianceCollector, CollectorRegistry]:
    registry = CollectorRegistry()
    collector = ComplianceCollector(CONTRACT, config, clock=clock)
    registry.register(collector)
    return collector, registry


def test_verdicts_follow_the_results_as_they_arrive() -> None:
    config = ComplianceConfig(
        policies=["cn-miit"], timezone="UTC", cn_miit=CnMiitPolicy(peak=PeakWindow(10, 16))
    )
    collector, registry = collector_with(config, Clock(NOW))
    _, samples = scrape(registry)
    assert ("netprobe_compliance_verdict", ("cn-miit", "download")) not in samples
    assert samples[("netprobe_compliance_valid_tests", ("cn-miit", "download"))] == 0

    for r in evening_tests(9, 95.0):
        collector.observe(r)
    _, samples = scrape(registry)
    assert samples[("netprobe_compliance_verdict", ("cn-miit", "download"))] == 1
    assert samples[("netprobe_compliance_share_ratio", ("cn-miit", "download"))] == 1.0
    assert samples[("netprobe_compliance_valid_tests", ("cn-miit", "download"))] == 10

    for r in evening_tests(10, 50.0, n=2):
        collector.observe(r)
    _, samples = scrape(registry)
    assert samples[("netprobe_compliance_verdict", ("cn-miit", "download"))] == 0
    assert samples[("netprobe_compliance_share_ratio", ("cn-miit", "download"))] == 10 / 12
    assert samples[("netprobe_compliance_verdict", ("cn-miit", "upload"))] == 1


def test_results_leave_the_window_and_other_kinds_are_ignored() -> None:
    clock = Clock(NOW)
    config = ComplianceConfig(policies=["cn-miit"], timezone="UTC", window_days=30)
    collector, registry = collector_with(config, clock)
    for r in evening_tests(9, 95.0):
        collector.observe(r)
    collector.observe({"kind": "drive", "id": "d", "started_at": NOW.isoformat()})
    assert scrape(registry)[1][("netprobe_compliance_valid_tests", ("cn-miit", "download"))] == 10
    clock.now = NOW + timedelta(days=31)
    assert scrape(registry)[1][("netprobe_compliance_valid_tests", ("cn-miit", "download"))] == 0


def test_campaign_progress_is_exported() -> None:
    config = ComplianceConfig(policies=["de-bnetza"], timezone="Europe/Berlin")
    today = [record(NOW - timedelta(minutes=m), down=95.0, up=None) for m in (60, 50, 40)]
    seeded = evening_tests(9, 95.0, n=4) + today
    registry = CollectorRegistry()
    registry.register(ComplianceCollector(CONTRACT, config, seeded, clock=Clock(NOW)))
    text, samples = scrape(registry)
    # Yesterday's 4 tests can no longer make a day; today's 3 (download only) count.
    assert samples[("netprobe_campaign_measurements", ("download",))] == 3
    assert samples[("netprobe_campaign_measurements", ("upload",))] == 0
    assert samples[("netprobe_campaign_required_measurements", ())] == 30
    assert "netprobe_compliance_verdict{" not in text  # no complete campaign: undecided


def test_the_exposition_passes_promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (bash probes/dev-setup.sh installs it)")
    config = ComplianceConfig(policies=list(POLICY_NAMES), timezone="UTC")
    collector, registry = collector_with(config, Clock(NOW))
    for r in evening_tests(9, 95.0):
        collector.observe(r)
    text, _ = scrape(registry)
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
