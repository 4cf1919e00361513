"""The agent as a process, without root: it serves, reloads on SIGHUP and /-/reload, keeps a
working configuration when the new one is bad (and says so), and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from agentproc import AgentProcess, free_port, stored, wait_for, write_config


def test_bad_reload_keeps_the_running_config_and_says_so(tmp_path: Path) -> None:
    # The first test is an hour away: this is about configuration, not measuring.
    config = write_config(
        tmp_path,
        embedded_server={"host": "127.0.0.1", "port": 0},
        schedule={"startup_delay": "1h"},
        exporter={"enable_lifecycle": True},
    )
    agent = AgentProcess(config)
    try:
        assert agent.metrics()["netprobe_config_last_reload_successful"] == 1
        good = config.read_text()

        config.write_text(good.replace("contract:", "contrakt:"))
        agent.process.send_signal(signal.SIGHUP)
        wait_for(
            "the failed reload to show",
            lambda: agent.metrics()["netprobe_config_last_reload_successful"] == 0,
        )
        assert "keeping the running configuration" in agent.log.read_text()
        assert "contrakt: unknown key" in agent.log.read_text()
        assert agent.healthy()
        code, text = agent.get("/-/reload", method="POST")
        assert code == 500 and "contrakt" in text

        config.write_text(good.replace("test-probe", "renamed-probe"))
        assert agent.get("/-/reload", method="POST")[0] == 200
        metrics = agent.metrics()
        assert metrics["netprobe_config_last_reload_successful"] == 1
        assert any('probe_id="renamed-probe"' in name for name in metrics)
    finally:
        assert agent.stop() == 0
    assert "stopped; store closed" in agent.log.read_text()


def test_agent_refuses_a_bad_listen_address_with_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = write_config(tmp_path, embedded_server={"host": "127.0.0.1", "port": 0})
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", "agent", "--config", str(config), "--listen", "nowhere"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--listen" in done.stderr and "Traceback" not in done.stderr


def test_the_agent_does_not_import_scapy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, netprobe.agent.main, netprobe.cli, netprobe.config;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scapy'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_idle_agent_maps_neither_aiohttp_nor_the_command_lines_pydantic(
    tmp_path: Path, loopback_server: str
) -> None:
    """After start, a native test and a scrape, the process `netprobe agent` started as has
    mapped no extension of aiohttp (only push, drives, ndt7 and the embedded server need it) nor
    pydantic's (typer's parser; the agent replaces itself with a process without it)."""
    import aiohttp.http_parser
    import pydantic_core

    extensions = [Path(m.__file__ or "").parent for m in (aiohttp.http_parser, pydantic_core)]
    own = Path("/proc/self/maps").read_text()
    # This test process imported both: a mapped extension is seen where it is loaded.
    assert all(f"{folder}/" in own for folder in extensions), extensions
    config = write_config(tmp_path, servers=[{"url": loopback_server}])
    agent = AgentProcess(config)
    try:
        wait_for("the first test", lambda: stored(tmp_path / "results.db"), timeout_seconds=120)
        assert agent.get("/metrics")[0] == 200
        maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
    finally:
        assert agent.stop() == 0
    assert [str(folder) for folder in extensions if f"{folder}/" in maps] == []


def test_a_test_that_does_not_fit_the_data_budget_is_skipped_and_counted(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        embedded_server={"host": "127.0.0.1", "port": 0},
        measurement={"max_bytes": "2GB"},
        budget={"monthly": "1GB"},
    )
    agent = AgentProcess(config)
    try:
        wait_for(
            "the skip to be counted",
            lambda: agent.metrics().get('netprobe_tests_skipped_total{reason="budget"}') == 1,
        )
        metrics = agent.metrics()
        assert metrics["netprobe_data_budget_bytes"] == 1e9
        assert metrics["netprobe_data_used_bytes"] == 0
        assert stored(tmp_path / "results.db") == []
    finally:
        agent.stop()


def test_push_sends_the_agents_metrics_by_remote_write(tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess
    import urllib.parse
    import urllib.request

    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is missing (bash probes/dev-setup.sh installs it)")
    receiver_port = free_port()
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    receiver = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{receiver_port}",
            "--web.enable-remote-write-receiver",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = write_config(
        tmp_path,
        embedded_server={"host": "127.0.0.1", "port": 0},
        schedule={"startup_delay": "1h"},
        push={"url": f"http://127.0.0.1:{receiver_port}/api/v1/write", "interval": "1s"},
    )
    agent = AgentProcess(config)

    def pushed() -> list[dict] | None:
        query = urllib.parse.urlencode({"query": 'netprobe_build_info{probe_id="test-probe"}'})
        url = f"http://127.0.0.1:{receiver_port}/api/v1/query?{query}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["data"]["result"] or None
        except OSError:
            return None

    try:
        (series,) = wait_for("the pushed build info", pushed)
        assert series["value"][1] == "1"
        wait_for(
            "the push counter to move",
            lambda: agent.metrics().get("netprobe_push_samples_total", 0) > 0,
        )
    finally:
        agent.stop()
        receiver.terminate()
        receiver.wait(timeout=30)
