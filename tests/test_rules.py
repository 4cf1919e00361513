"""The Prometheus rules, the Alertmanager configuration and the stack's Prometheus
configuration: promtool and amtool accept them, every alert follows the house conventions
(docs/method.md §6), and every alert has a runbook section and promtool unit tests that show it
firing when it should and silent when it should be.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "dashboards" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
ALERTS = PROMETHEUS / "alerts.yml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERTMANAGER = ROOT / "dashboards" / "alertmanager" / "alertmanager.yml"

SEVERITIES = {"critical", "warning", "info"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (bash probes/dev-setup.sh installs it)")
    return path


def run_tool(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings (lower case, spaces to dashes)."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_promtool_accepts_the_rule_files() -> None:
    out = run_tool(tool("promtool"), "check", "rules", str(RULES), str(ALERTS))
    assert "SUCCESS" in out


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests in dashboards/prometheus/tests"
    out = run_tool(tool("promtool"), "test", "rules", *map(str, UNIT_TESTS))
    assert out.count("SUCCESS") == len(UNIT_TESTS)


def test_stack_prometheus_configuration_is_valid() -> None:
    out = run_tool(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "2 rule files found" in out


def test_alertmanager_configuration_is_valid() -> None:
    run_tool(tool("amtool"), "check-config", str(ALERTMANAGER))


@pytest.mark.parametrize(
    "rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}"
)
def test_alert_follows_the_conventions(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Netprobe(?:[A-Z][a-z0-9]+)+", rule["alert"]), "CamelCase, Netprobe prefix"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert "{{ $labels." in annotations["description"] or "absent(" in rule["expr"], (
        "the description names the probe it is about"
    )
    runbook, _, anchor = annotations["runbook_url"].partition("#")
    assert runbook == "docs/runbook.md"
    assert anchor == rule["alert"].lower(), "the runbook section is named after the alert"
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section {rule['alert']}"


def test_every_alert_has_a_test_that_fires_and_one_that_stays_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"


def test_every_severity_variant_is_shown_firing() -> None:
    shown: set[tuple[str, str]] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    shown.add((check["alertname"], alert["exp_labels"]["severity"]))
    variants = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    assert variants - shown == set()


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    assert sorted(set(sections)) == sorted({rule["alert"] for rule in alert_rules()})
