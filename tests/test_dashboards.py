"""Lint of the Grafana dashboards: the rules of grafana/dashboard-linter (named after them),
the house rules of docs/method.md §6 (units and descriptions on every panel, stable uids), that
every query is valid PromQL (promtool parses them), and that the provisioning files and the
compose file fit together.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana import GRAFANA, dashboard_targets, load_dashboards, panels, selectors, substitute

ROOT = GRAFANA.parent.parent
DASHBOARDS = load_dashboards()
TARGETS = dashboard_targets()

# The uids are in the dashboards' URLs and in links between them: changing one breaks every
# bookmark, so they are pinned here.
STABLE_UIDS = {
    "netprobe-fleet.json": "netprobe-fleet",
    "netprobe-probe.json": "netprobe-probe",
    "netprobe-drives.json": "netprobe-drives",
    "netprobe-compliance.json": "netprobe-compliance",
}

# grafana/dashboard-linter's panel-units-rule list, the units that fit netprobe's metrics.
VALID_UNITS = {
    "none", "short", "percent", "percentunit", "bytes", "decbytes", "bits", "decbits",
    "Bps", "binBps", "bps", "binbps", "KBs", "MBs", "GBs", "Kbits", "Mbits", "Gbits",
    "s", "ms", "µs", "ns", "m", "h", "d", "dtdurations", "dtdurationms", "dateTimeAsIso",
    "dateTimeFromNow", "bool", "bool_yes_no", "bool_on_off", "string",
}  # fmt: skip
DATASOURCE_UIDS = {"$datasource", "${datasource}"}
VARIABLE_FUNCTIONS = re.compile(r"^(label_names|label_values|metrics|query_result)\((.*)\)$")
RECORDED = re.compile(r"^\w+:\w+:\w+$")


def by_name(dashboard: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in dashboard["templating"]["list"] if v["name"] == name), None)


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, panel) for name, d in DASHBOARDS.items() for panel in panels(d)]


PANELS = all_panels()
PANEL_IDS = [f"{name}: {panel['title']}" for name, panel in PANELS]
TARGET_IDS = [f"{t.dashboard}: {t.panel}: {t.expr[:40]}" for t in TARGETS]


def test_the_four_dashboards_exist_with_stable_uids() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == STABLE_UIDS


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_uid_and_ids(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert len(dashboard["uid"]) <= 40 and re.fullmatch(r"[a-z0-9-]+", dashboard["uid"])
    assert dashboard.get("id") is None, "a fixed numeric id clashes with provisioning"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique (Grafana links use them)"
    assert dashboard["title"].startswith("netprobe / ") and "netprobe" in dashboard["tags"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_datasource_rule(name: str) -> None:
    variables = [v for v in DASHBOARDS[name]["templating"]["list"] if v["type"] == "datasource"]
    assert len(variables) == 1
    assert variables[0]["name"] == "datasource"
    assert variables[0]["label"] == "Data source"
    assert variables[0]["query"] == "prometheus"


@pytest.mark.parametrize("variable", ["job", "instance"])
@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_job_and_instance_rules(name: str, variable: str) -> None:
    template = by_name(DASHBOARDS[name], variable)
    assert template is not None, f"missing the {variable} variable"
    assert template["datasource"]["uid"] in DATASOURCE_UIDS
    assert template["type"] == "query"
    assert template["label"] == variable.title()
    assert template["multi"] is True
    assert template["allValue"] == ".+"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_label_promql_and_reload_on_time_change(name: str) -> None:
    for template in DASHBOARDS[name]["templating"]["list"]:
        if template["type"] != "query":
            continue
        assert VARIABLE_FUNCTIONS.match(template["query"]), template["query"]
        assert template["refresh"] == 2, f"{template['name']}: refresh on time range change"
        assert template["datasource"]["uid"] in DATASOURCE_UIDS


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_rules(name: str, panel: dict[str, Any]) -> None:
    # panel-datasource-rule
    assert panel["datasource"]["uid"] in DATASOURCE_UIDS
    for target in panel["targets"]:
        assert target["datasource"]["uid"] in DATASOURCE_UIDS
    # panel-title-description-rule
    assert panel["title"].strip() and panel["description"].strip()
    # panel-units-rule, on every panel (docs/method.md §6), not only the linter's panel types
    assert panel["fieldConfig"]["defaults"].get("unit") in VALID_UNITS
    # panel-no-targets-rule
    assert panel["targets"], "a panel without queries"


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_target_rules(target: Any) -> None:
    found = selectors(target.expr)
    assert found, "a query without a vector selector"
    for selector in found:
        where = f"{selector.name or '{...}'} in {target.expr}"
        # target-job-rule and target-instance-rule
        assert selector.matchers.get("job") == ("=~", "$job"), where
        assert selector.matchers.get("instance") == ("=~", "$instance"), where
        # target-rate-interval-rule; increase() may also total the whole range
        if selector.function in ("rate", "irate"):
            assert selector.range == "$__rate_interval", where
        if selector.function == "increase":
            assert selector.range in ("$__rate_interval", "$__range"), where
        # target-counter-agg-rule
        if selector.name.endswith("_total"):
            assert selector.function in ("rate", "irate", "increase"), where
            assert selector.range is not None, where


def test_recorded_series_the_dashboards_use_are_recorded() -> None:
    groups = yaml.safe_load((ROOT / "dashboards" / "prometheus" / "rules.yml").read_text())
    recorded = {rule["record"] for group in groups["groups"] for rule in group["rules"]}
    used = {s.name for t in TARGETS for s in selectors(t.expr) if RECORDED.match(s.name)}
    assert used and used <= recorded


def test_metric_names_follow_the_conventions() -> None:
    names = {s.name for t in TARGETS for s in selectors(t.expr)} - {"up", "ALERTS"}
    for name in names:
        metric = name.split(":")[1] if ":" in name else name
        assert metric.startswith("netprobe_"), name
        assert not re.search(r"_(bits|milliseconds|ms|mbit|kbps)(_|$)", metric), name


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (variables filled in) as a recording rule's expression."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (bash probes/dev-setup.sh installs it)")
    values = {
        "__rate_interval": "1m",
        "__range": "1h",
        "job": ".+",
        "instance": ".+",
        "drive": ".+",
        "policy": ".+",
    }
    rules = [
        {"record": f"check:query:{i}", "expr": substitute(t.expr, values)}
        for i, t in enumerate(TARGETS)
    ]
    for d in DASHBOARDS.values():
        for template in d["templating"]["list"]:
            match = VARIABLE_FUNCTIONS.match(template["query"])
            if match and match.group(1) == "label_values" and "," in match.group(2):
                series = match.group(2).rsplit(",", 1)[0]
                rules.append({"record": "check:variable:x", "expr": substitute(series, values)})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", "--lint=none", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_provisioning_points_at_the_dashboards() -> None:
    provisioning = GRAFANA / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "netprobe.yml").read_text())
    assert [d["type"] for d in source["datasources"]] == ["prometheus"]
    assert source["datasources"][0]["isDefault"] is True
    provider = yaml.safe_load((provisioning / "dashboards" / "netprobe.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "dashboards" / "docker-compose.yml").read_text())
    grafana_mounts = dict(
        volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"]
    )
    assert grafana_mounts["./grafana"] == path
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_compose_stack_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "dashboards" / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"agent", "prometheus", "alertmanager", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = re.sub(r"\$\{\w+:-([^}]+)\}", r"\1", volume.split(":")[0])
            if source.startswith("."):
                assert (ROOT / "dashboards" / source).exists(), volume
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    agent = compose["services"]["agent"]
    assert agent["network_mode"] == "host", "the agent must see the host's WAN interface"


def test_stack_agent_configuration_is_valid() -> None:
    netprobe = shutil.which("netprobe")
    if netprobe is None:
        pytest.skip("netprobe is not installed (pip install -e .)")
    done = subprocess.run(
        [netprobe, "config", "check", str(ROOT / "dashboards" / "netprobe.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
