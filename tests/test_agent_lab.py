"""The agent against a shaped lab link (root): a real Prometheus scrapes the right values,
cross-traffic on the WAN interface holds a test until it stops, and a test interrupted by
SIGTERM or SIGKILL is recorded as aborted with nothing stored lost."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agentproc import AgentProcess, free_port, running, stored, wait_for, write_config

from netprobe.compliance.evidence import verify_chain

pytestmark = pytest.mark.lab


def lab_config(tmp_path: Path, lab: object, **sections: object) -> Path:
    return write_config(
        tmp_path,
        probe={"id": "lab-probe", "interface": lab.client_if},  # type: ignore[attr-defined]
        servers=[{"url": lab.netprobe_url, "name": "lab"}],  # type: ignore[attr-defined]
        **sections,
    )


def test_prometheus_scrapes_the_agents_results(make_lab, tmp_path: Path) -> None:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip("prometheus is missing (bash probes/dev-setup.sh installs it)")
    lab = make_lab(down="20Mbit", up="5Mbit")
    lab.start_netprobe_server()
    agent = AgentProcess(
        lab_config(tmp_path, lab, measurement={"directions": ["download", "upload"]})
    )
    prometheus_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: netprobe\n    static_configs: [{{targets: ['127.0.0.1:{agent.port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (record,) = wait_for("a stored line test", lambda: stored(tmp_path / "results.db"))
        assert record["outcome"] == "ok" and record["valid"], record
        assert isinstance(record["peak"], bool) and record["probe_id"] == "lab-probe"
        conditions = record["conditions"]
        assert conditions["interface"] == lab.client_if and conditions["link_type"] == "wired"
        assert conditions["cross_traffic_bytes_per_second"] < 25_000
        assert conditions["cross_traffic_during_bytes_per_second"] < 25_000
        assert record["evidence"]["seq"] == 1
        download = record["download"]["bytes_per_second"]
        upload = record["upload"]["bytes_per_second"]
        # The shaped link: 20 and 5 Mbit/s of wire rate, a little less of TCP payload.
        assert 0.80 * 20e6 / 8 < download <= 20e6 / 8
        assert 0.80 * 5e6 / 8 < upload <= 5e6 / 8

        import json
        import urllib.parse
        import urllib.request

        def query(expr: str) -> dict[str, float]:
            url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": expr}
            )
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.load(response)
            except OSError:
                return {}
            return {
                json.dumps(r["metric"].get("direction", "")): float(r["value"][1])
                for r in body["data"]["result"]
            }

        rates = wait_for(
            "Prometheus to have the rates",
            lambda: (r := query("netprobe_line_rate_bytes_per_second")) and len(r) == 2 and r,
        )
        assert rates['"download"'] == pytest.approx(download, rel=1e-12)
        assert rates['"upload"'] == pytest.approx(upload, rel=1e-12)
        window = query(
            'netprobe_line_window_bytes_total{direction="download"}'
            ' / netprobe_line_window_seconds_total{direction="download"}'
        )
        assert window['"download"'] == pytest.approx(
            record["download"]["bytes"] / record["download"]["window_seconds"], rel=1e-9
        )
        tests = query('netprobe_line_tests_total{outcome="ok"}')
        assert tests == {'"download"': 1.0, '"upload"': 1.0}
        contract = query('netprobe_contract_rate_bytes_per_second{kind="theoretical"}')
        assert contract == {'"download"': 20e6 / 8, '"upload"': 5e6 / 8}
        success = query("netprobe_line_last_success_timestamp_seconds")
        started = datetime.fromisoformat(record["started_at"]).timestamp()
        assert success['"download"'] == pytest.approx(started, abs=1e-3)

        used = record["download"]["total_bytes"] + record["upload"]["total_bytes"]
        assert agent.metrics()["netprobe_data_used_bytes"] == used
        _, text = agent.get("/metrics")
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        agent.stop()


def link_busy(lab, threshold_bytes_per_second: float = 100_000) -> bool:
    """True when the lab link carries more than the threshold over a quarter second."""
    before = lab.interface_bytes()
    time.sleep(0.25)
    return (lab.interface_bytes() - before) / 0.25 > threshold_bytes_per_second


def test_cross_traffic_holds_the_test_until_it_stops(make_lab, tmp_path: Path) -> None:
    lab = make_lab(down="20Mbit", up="20Mbit")
    lab.start_netprobe_server()
    lab.start_iperf3_server()
    # 4 Mbit/s (500 kB/s) of someone else's download: far above 25,000 B/s.
    background_log = tmp_path / "background.log"
    background = subprocess.Popen(
        ["iperf3", "-c", lab.server_ip, "-R", "-t", "120", "-b", "4M"],
        stdout=background_log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def flowing() -> bool:
        if background.poll() is not None:
            raise AssertionError(f"the background iperf3 stopped: {background_log.read_text()}")
        return link_busy(lab)

    # The agent must first see the link busy: on a loaded machine iperf3 takes a while to start.
    wait_for("the background traffic to flow", flowing)
    agent = AgentProcess(lab_config(tmp_path, lab))
    try:
        wait_for(
            "the test to be held",
            lambda: agent.metrics().get('netprobe_gate_holds_total{gate="cross_traffic"}') == 1,
        )
        time.sleep(2.0)  # held through more than one re-check
        assert stored(tmp_path / "results.db") == [] and running(tmp_path / "results.db") == []
        # The traffic cannot stop before this instant; on a busy machine it may stop later.
        traffic_ended = datetime.now(UTC)
        background.terminate()
        background.wait(timeout=30)
        (record,) = wait_for("the held test to run", lambda: stored(tmp_path / "results.db"))
        conditions = record["conditions"]
        assert conditions["hold_reasons"] == ["cross_traffic"]
        assert conditions["held_seconds"] >= 2.0
        assert conditions["cross_traffic_bytes_per_second"] <= 25_000
        # It ran only once the traffic stopped: the half-second sample before it saw a quiet link.
        started = datetime.fromisoformat(record["started_at"])
        assert started > traffic_ended - timedelta(seconds=0.5)
        assert record["valid"] and record["outcome"] == "ok", record["invalid_reason"]
        metrics = agent.metrics()
        assert metrics['netprobe_gate_holds_total{gate="cross_traffic"}'] == 1
        assert metrics['netprobe_gate_hold_seconds_total{gate="cross_traffic"}'] >= 2.0
        assert metrics['netprobe_gate_holds_total{gate="cpu"}'] == 0
    finally:
        background.kill()
        agent.stop()


def test_sigterm_aborts_the_running_test_and_records_it(make_lab, tmp_path: Path) -> None:
    lab = make_lab(down="20Mbit")
    lab.start_netprobe_server()
    agent = AgentProcess(lab_config(tmp_path, lab, measurement={"duration": "20s"}))
    (marked,) = wait_for("a test to start", lambda: running(tmp_path / "results.db"))
    time.sleep(1.0)
    assert agent.stop(signal.SIGTERM) == 0
    (record,) = stored(tmp_path / "results.db")
    assert record["id"] == marked
    assert record["outcome"] == "aborted" and record["valid"] is False
    assert record["download"]["reason"] == "aborted"
    assert running(tmp_path / "results.db") == []


def test_sigkill_during_a_test_loses_nothing_and_records_the_interruption(
    make_lab, tmp_path: Path
) -> None:
    lab = make_lab(down="20Mbit")
    lab.start_netprobe_server()
    config = lab_config(
        tmp_path,
        lab,
        schedule={"mean_interval": "2s", "min_interval": "1s", "max_interval": "3s"},
        measurement={"duration": "3s"},
    )
    db = tmp_path / "results.db"
    agent = AgentProcess(config)

    def mid_test_after_a_stored_one() -> list[str] | None:
        done = {r["id"] for r in stored(db)}
        busy = [i for i in running(db) if i not in done]
        return busy if done and busy else None

    (marked,) = wait_for("a second test to be running", mid_test_after_a_stored_one)
    before = stored(db)
    agent.kill()

    restarted = AgentProcess(config)  # the interruption is recorded before it serves
    try:
        after = stored(db)
        assert after[: len(before)] == before
        aborted = [r for r in after if r["id"] == marked]
        assert [r["outcome"] for r in aborted] == ["aborted"]
        assert verify_chain(after).count == len(after)
        metrics = restarted.metrics()
        assert metrics['netprobe_line_tests_total{direction="download",outcome="aborted"}'] == 1
    finally:
        restarted.stop()


def test_drives_are_probed_right_after_the_line_test_never_during_it(
    make_lab, tmp_path: Path
) -> None:
    lab = make_lab(down="20Mbit")
    lab.start_netprobe_server()
    drive = {
        "name": "lab-share",
        "kind": "http",
        "url": f"{lab.netprobe_url}/netprobe/v1/download?bytes=8000000&test=drive",
        "duration": "2s",
        "burst": "1s",
        "max_bytes": "8MB",
    }
    agent = AgentProcess(lab_config(tmp_path, lab, drives=[drive]))
    try:
        line, probe = wait_for(
            "a line test and a drive probe",
            lambda: (r := stored(tmp_path / "results.db")) and len(r) == 2 and r,
        )
        assert (line["kind"], probe["kind"]) == ("line", "drive")
        assert probe["run_id"] == line["run_id"] and probe["probe_id"] == "lab-probe"
        line_ended = datetime.fromisoformat(line["started_at"]) + timedelta(
            seconds=line["download"]["duration_seconds"]
        )
        assert datetime.fromisoformat(probe["started_at"]) >= line_ended
        assert probe["download"]["ok"], probe["download"]
        metrics = agent.metrics()
        assert any(name.startswith("netprobe_drive_") for name in metrics)
    finally:
        agent.stop()
