"""End to end: a real Prometheus (and Alertmanager) watching a real agent that measures a
shaped lab link. The link is reshaped below the contract; the line alerts go pending, then
firing, and reach Alertmanager; a reload shrinks the data budget and the budget alert fires;
and every query of every dashboard returns data from that Prometheus.

Prometheus loads a test copy of dashboards/prometheus/{rules,alerts}.yml in which every
`for:` is 5 s and every range window 40 s: the rules themselves, on the time scale of a
two-minute test (an agent testing every few seconds, scraped every second).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana import dashboard_targets, load_dashboards, substitute
from lab import Lab, free_port, wait_for_port

from netprobe.units import parse_rate

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "dashboards" / "prometheus"
ALERTMANAGER_CONFIG = ROOT / "dashboards" / "alertmanager" / "alertmanager.yml"

TEST_FOR = "5s"
TEST_WINDOW = "40s"
# The contract sits below the link's rate (htb at 100/20 Mbit carries about 95 % of that
# as TCP payload), so the alert stays silent with a margin, whatever the machine's load.
LINK_DOWN, LINK_UP = "100Mbit", "20Mbit"
CONTRACT_DOWN, CONTRACT_UP = "80Mbit", "16Mbit"
RESHAPED_DOWN = "20Mbit"
ALERT = "NetprobeLineRateBelowContract"


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def values_of(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def wait_until(what: str, check: Callable[[], Any], timeout_seconds: float) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` on time-out."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(0.5)


def rules_for_tests(target_dir: Path) -> list[str]:
    """The rule files with short `for:` and range windows, written into `target_dir`."""
    names = []
    for name in ("rules.yml", "alerts.yml"):
        groups = yaml.safe_load((RULES_DIR / name).read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                rule["expr"] = re.sub(r"\[\d+[smhdw]\]", f"[{TEST_WINDOW}]", rule["expr"])
                if "for" in rule:
                    rule["for"] = TEST_FOR
        (target_dir / name).write_text(yaml.safe_dump(groups, sort_keys=False))
        names.append(name)
    return names


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr})
        reply = http_json(f"{self.url}/api/v1/query?{params}")
        assert reply["status"] == "success", reply
        return list(reply["data"]["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        reply = http_json(f"{self.url}/api/v1/query_range?{params}")
        assert reply["status"] == "success", (expr, reply)
        return list(reply["data"]["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        reply = http_json(f"{self.url}/api/v1/alerts")
        return [a for a in reply["data"]["alerts"] if a["labels"]["alertname"] == name]


def start(argv: list[str], log: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    out = open(log, "wb")  # noqa: SIM115 - lives with the process
    processes.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def agent_config(lab: Lab, store: Path) -> dict[str, Any]:
    return {
        "probe": {"id": "e2e", "interface": lab.client_if},
        "contract": {
            "operator": "Lab Telecom",
            "plan": "Lab 80/16",
            "download": CONTRACT_DOWN,
            "upload": CONTRACT_UP,
            "minimum": {"download": "40Mbit", "upload": "8Mbit"},
            "normal": {"download": "70Mbit", "upload": "14Mbit"},
        },
        # The second server refuses connections: its tests fail, so failures are on show.
        "servers": [
            {"url": lab.netprobe_url, "name": "lab"},
            {"url": f"http://{lab.server_ip}:9", "name": "closed"},
        ],
        "schedule": {
            "mean_interval": "1s",
            "min_interval": "1s",
            "max_interval": "1s",
            "startup_delay": "1s",
        },
        "measurement": {"duration": "2s", "streams": 2, "max_bytes": "100MB", "time_limit": "10s"},
        "budget": {"monthly": "50GB"},
        "gates": {
            "cross_traffic_threshold": None,
            "cpu_threshold_percent": None,
            "sample_duration": "0.2s",
            "require_wired": False,
        },
        # "Drives" on the lab server, probed back to back with each line test.
        "drives": [
            {
                "name": "lab-http",
                "kind": "http",
                "url": f"{lab.netprobe_url}/netprobe/v1/download?bytes=100000000&test=drive",
                "tier": "free",
                "duration": "2s",
                "burst": "0.5s",
                "time_limit": "10s",
                "max_bytes": "2GB",
            },
            # Without the server's `test` parameter: refused with HTTP 400, a failure.
            {
                "name": "lab-broken",
                "kind": "http",
                "url": f"{lab.netprobe_url}/netprobe/v1/download?bytes=1000",
                "tier": "paid",
                "duration": "2s",
                "burst": "0.5s",
            },
        ],
        "store": {"path": str(store)},
        "exporter": {"enable_lifecycle": True},  # the test reloads through POST /-/reload
        "compliance": {
            "policies": ["cn-miit", "de-bnetza"],
            "cn_miit": {"min_tests": 2, "peak": {"start_hour": 0, "end_hour": 24}},
        },
    }


@pytest.mark.lab
@pytest.mark.slow
def test_line_alert_fires_and_every_dashboard_query_has_data(
    make_lab: Callable[..., Lab], processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    prometheus_bin, netprobe_bin = shutil.which("prometheus"), shutil.which("netprobe")
    if prometheus_bin is None or netprobe_bin is None:
        pytest.skip("needs prometheus and netprobe (bash probes/dev-setup.sh installs them)")
    alertmanager_bin = shutil.which("alertmanager")

    lab = make_lab(down=LINK_DOWN, up=LINK_UP)
    lab.start_netprobe_server()

    agent_port, prometheus_port = free_port(), free_port()
    instance = f"127.0.0.1:{agent_port}"
    config = tmp_path / "agent.yml"
    config.write_text(yaml.safe_dump(agent_config(lab, tmp_path / "results.db")))
    start(
        [netprobe_bin, "agent", "--config", str(config), "--listen", instance],
        tmp_path / "agent.log",
        processes,
    )

    alerting: dict[str, Any] = {}
    alertmanager_url = ""
    if alertmanager_bin is not None:
        alertmanager_port = free_port()
        alertmanager_url = f"http://127.0.0.1:{alertmanager_port}"
        start(
            [
                alertmanager_bin,
                f"--config.file={ALERTMANAGER_CONFIG}",
                f"--storage.path={tmp_path / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                "--cluster.listen-address=",
            ],
            tmp_path / "alertmanager.log",
            processes,
        )
        alerting = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        }
    rule_files = rules_for_tests(tmp_path)
    prometheus_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [{"job_name": "netprobe", "static_configs": [{"targets": [instance]}]}],
        **({"alerting": alerting} if alerting else {}),
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
    start(
        [
            prometheus_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        tmp_path / "prometheus.log",
        processes,
    )
    wait_for_port("127.0.0.1", prometheus_port, timeout_seconds=30)
    wait_for_port("127.0.0.1", agent_port, timeout_seconds=30)
    prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}")
    started = time.time()

    # -- the line meets its contract: averages come in, the alert stays silent -------------
    ratio = 'instance_direction:netprobe_line_contract_ratio:avg6h{direction="download"}'
    fast = wait_until(
        "an averaged download rate from two tests",
        lambda: [v for v in values_of(prometheus.query(ratio)) if not math.isnan(v)],
        timeout_seconds=60,
    )
    assert fast[0] > 0.9, "the link carries more than the alert's share of the contract"
    assert prometheus.alerts(ALERT) == []

    # -- the link drops below the contract: pending, then firing --------------------------
    lab.reshape(down=RESHAPED_DOWN)
    reshaped = time.time()
    states: list[str] = []

    def firing() -> bool:
        alerts = prometheus.alerts(ALERT)
        states.extend(a["state"] for a in alerts if not states or states[-1] != a["state"])
        return any(a["state"] == "firing" for a in alerts)

    wait_until(f"{ALERT} to fire", firing, timeout_seconds=90)
    print(f"\n{ALERT} firing {time.time() - reshaped:.0f} s after the reshape; states {states}")
    fired = prometheus.alerts(ALERT)
    assert {a["labels"]["direction"] for a in fired} == {"download"}, "upload kept its rate"
    assert fired[0]["labels"]["severity"] == "warning"
    assert fired[0]["annotations"]["runbook_url"].endswith("#netprobelineratebelowcontract")
    # Pending first: seen by polling, or in the ALERTS series Prometheus keeps of it.
    pending = prometheus.query_range(
        f'ALERTS{{alertname="{ALERT}", alertstate="pending"}}', reshaped, time.time(), 1
    )
    assert "pending" in states or pending, f"never pending before firing (states {states})"
    # The alert's value is the averaged share of the contract: below 0.9, above what the
    # reshaped link alone would give (old fast tests may still be in the window).
    share_now = float(fired[0]["value"])
    assert parse_rate(RESHAPED_DOWN) / parse_rate(CONTRACT_DOWN) * 0.8 < share_now < 0.9

    # The cn-miit verdict turns to a deviation too: half the valid tests now miss 90 %.
    def verdict_alert() -> list[dict[str, Any]]:
        alerts = prometheus.alerts("NetprobeLineBelowContract")
        return [a for a in alerts if a["state"] == "firing"]

    verdicts = wait_until("NetprobeLineBelowContract to fire", verdict_alert, timeout_seconds=60)
    assert {(a["labels"]["policy"], a["labels"]["direction"]) for a in verdicts} == {
        ("cn-miit", "download")
    }

    if alertmanager_url:
        filter_ = urllib.parse.urlencode({"filter": f'alertname="{ALERT}"'})
        received = wait_until(
            f"{ALERT} at Alertmanager",
            lambda: http_json(f"{alertmanager_url}/api/v2/alerts?{filter_}"),
            timeout_seconds=30,
        )
        assert received[0]["labels"]["instance"] == instance

    # -- a reload shrinks the data budget: tests are skipped, the budget alert fires -------
    spent = agent_config(lab, tmp_path / "results.db")
    spent["budget"] = {"monthly": "1MB"}
    config.write_text(yaml.safe_dump(spent))
    reload = urllib.request.Request(f"http://{instance}/-/reload", method="POST")
    urllib.request.urlopen(reload, timeout=10).close()
    wait_until(
        "NetprobeDataBudgetNearlySpent to fire",
        lambda: [
            a for a in prometheus.alerts("NetprobeDataBudgetNearlySpent") if a["state"] == "firing"
        ],
        timeout_seconds=60,
    )
    wait_until(
        "tests skipped for the budget",
        lambda: prometheus.query(
            'increase(netprobe_tests_skipped_total{reason="budget"}[10s]) > 0'
        ),
        timeout_seconds=30,
    )

    # -- every dashboard query returns data from this Prometheus --------------------------
    check_dashboards(prometheus, instance, started)


def check_dashboards(prometheus: Prometheus, instance: str, since: float) -> None:
    """Every panel query, as Grafana would send it over the run, and every variable query."""
    end = time.time()
    values = {
        "job": "netprobe",
        "instance": instance,
        "drive": ".+",
        "policy": ".+",
        # Grafana's $__rate_interval for a 1 s scrape interval on a short range, with room
        # for late scrapes on a busy machine.
        "__rate_interval": "10s",
        "__range": f"{int(end - since) + 1}s",
    }
    empty = [
        f"{target.dashboard} / {target.panel}: {target.expr}"
        for target in dashboard_targets()
        if not prometheus.query_range(substitute(target.expr, values), since, end, 2)
    ]
    for name, dashboard in load_dashboards().items():
        for variable in dashboard["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
            if match and not prometheus.query(
                f"count by ({match.group(2)}) ({substitute(match.group(1), values)})"
            ):
                empty.append(f"{name}: variable {variable['name']}: {variable['query']}")
    assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)
