"""The fleet path on VictoriaMetrics: an agent measuring a shaped lab link pushes its metrics by
remote_write into a real VictoriaMetrics, vmalert evaluates the stack's recording and alert rules
against it and writes the results back, and every dashboard query and variable then returns
data from VictoriaMetrics (MetricsQL), as the dashboards would show a pushed fleet.

The rules are the test copies tests/test_e2e_alerting.py makes (40 s windows, 5 s `for:`), and
the agent the same configuration, plus a `push:` section.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from lab import Lab, free_port
from test_e2e_alerting import Prometheus, agent_config, check_dashboards, rules_for_tests, start
from test_e2e_alerting import processes as processes  # the fixture, shared
from test_push_prometheus import VictoriaMetrics

VMALERT = shutil.which("vmalert")


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("victoria-metrics") is None or VMALERT is None,
    reason="needs victoria-metrics and vmalert (apt victoria-metrics)",
)
def test_every_dashboard_query_has_data_from_victoria_metrics_fed_by_push(
    make_lab: Callable[..., Lab], processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    assert VMALERT is not None
    lab = make_lab(down="100Mbit", up="20Mbit")
    lab.start_netprobe_server()
    store = VictoriaMetrics(tmp_path)
    store.start()
    try:
        config = agent_config(lab, tmp_path / "results.db")
        config["exporter"] = {"listen": f"127.0.0.1:{free_port()}"}
        config["push"] = {
            "url": store.write_url,
            "interval": "1s",
            "external_labels": {"site": "lab"},
        }
        config_file = tmp_path / "agent.yml"
        config_file.write_text(yaml.safe_dump(config))
        start(
            [sys.executable, "-m", "netprobe", "agent", "--config", str(config_file)],
            tmp_path / "agent.log",
            processes,
        )
        started = time.time()
        rules = [f"-rule={tmp_path / name}" for name in rules_for_tests(tmp_path)]
        start(
            [
                VMALERT,
                *rules,
                f"-datasource.url={store.url}",
                f"-remoteWrite.url={store.url}",
                f"-remoteRead.url={store.url}",
                "-evaluationInterval=1s",
                f"-httpListenAddr=127.0.0.1:{free_port()}",
                # alerts are kept as ALERTS series; nobody receives notifications here
                f"-notifier.url=http://127.0.0.1:{free_port()}",
            ],
            tmp_path / "vmalert.log",
            processes,
        )
        victoria = Prometheus(store.url)  # the same HTTP query API
        deadline = time.monotonic() + 150
        ratio = 'instance_direction:netprobe_line_contract_ratio:avg6h{direction="download"}'
        while not (
            victoria.query(ratio)
            and victoria.query('{__name__=~"netprobe_drive_rate_bytes_per_second"}')
        ):  # line tests averaged by vmalert, drives probed
            assert time.monotonic() < deadline, "no averaged line rate and drive rate in time"
            time.sleep(2)
        # then, as in test_e2e_alerting, a reload shrinks the budget so that tests are skipped
        config["budget"] = {"monthly": "1MB"}
        config_file.write_text(yaml.safe_dump(config))
        processes[0].send_signal(signal.SIGHUP)
        while True:  # the drive and compliance panels fill a little after the first tests
            store.get("/internal/force_flush")
            try:
                check_dashboards(victoria, "e2e", started)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(5)
        assert store.write_errors() == {}
        # the probe's own series arrived with the push labels, not a scrape's
        [build] = victoria.query('netprobe_build_info{job="netprobe"}')
        assert build["metric"]["instance"] == "e2e" and build["metric"]["site"] == "lab"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        processes.clear()
        store.stop()
