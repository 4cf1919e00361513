"""What ships for running `netprobe serve` as a public server: the systemd unit and the
container entry. The unit's own command line is started here, under the unit's descriptor
limit, and must serve, log and export metrics as the unit promises."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from lab import free_port, wait_for_port

from netprobe.serve.state import RESERVED_DESCRIPTORS

ROOT = Path(__file__).parents[1]
UNIT = ROOT / "probes" / "serve" / "netprobe-serve.service"
COMPOSE = ROOT / "probes" / "serve" / "compose.yaml"
INSTALLED = "/opt/netprobe/bin/netprobe"


def service() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return dict(parser["Service"])


def exec_start() -> list[str]:
    return shlex.split(service()["ExecStart"].replace("\\\n", " "))


def option(argv: list[str], name: str) -> str:
    for k, arg in enumerate(argv):
        if arg == name:
            return argv[k + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {argv}")


def test_unit_runs_as_its_own_user_without_capabilities_and_with_fitting_limits() -> None:
    settings = service()
    assert settings["DynamicUser"] == "yes"
    assert settings["CapabilityBoundingSet"] == "" and settings["AmbientCapabilities"] == ""
    assert settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "yes"
    argv = exec_start()
    assert argv[:2] == [INSTALLED, "serve"]
    connections = int(option(argv, "--max-connections"))
    assert connections + RESERVED_DESCRIPTORS <= int(settings["LimitNOFILE"])
    assert option(argv, "--access-log").startswith(f"/var/log/{settings['LogsDirectory']}/")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt systemd)"
)
def test_unit_passes_systemd_analyze_verify_and_security(tmp_path: Path) -> None:
    netprobe = shutil.which("netprobe") or str(Path(sys.executable).with_name("netprobe"))
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, netprobe))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True
    )
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure[1]) <= 2.0  # systemd's scale: 0-10, "OK" below 5


def test_the_units_command_serves_logs_and_exports_under_its_descriptor_limit(
    tmp_path: Path,
) -> None:
    argv = exec_start()
    port, metrics_port = free_port(), free_port()
    access_log = tmp_path / "access.log"
    for name, value in (
        ("--host", "127.0.0.1"),
        ("--port", str(port)),
        ("--access-log", str(access_log)),
        ("--metrics", f"127.0.0.1:{metrics_port}"),
    ):
        argv[argv.index(name) + 1] = value
    nofile = service()["LimitNOFILE"]
    command = ["prlimit", f"--nofile={nofile}:{nofile}", sys.executable, "-m", "netprobe"]
    process = subprocess.Popen(
        [*command, *argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port("127.0.0.1", port, process=process)
        wait_for_port("127.0.0.1", metrics_port, process=process)
        url = f"http://127.0.0.1:{port}/netprobe/v1/download?bytes=12345&test=unit"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert len(response.read()) == 12345
        time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    line = access_log.read_text().splitlines()[-1]
    assert re.search(r"client=127\.0\.0\.1 protocol=native direction=download bytes=12345 ", line)
    assert line.endswith("outcome=ok")
    assert 'netprobe_serve_bytes_total{direction="download",protocol="native"} 12345.0' in metrics
    assert "netprobe_serve_max_connections 480.0" in metrics
    assert "Traceback" not in stderr


def test_container_entry_runs_serve_with_the_same_limits() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["netprobe-serve"]
    assert compose["command"][0] == "serve"
    connections = int(next(a for a in compose["command"] if "max-connections" in a).split("=")[1])
    assert connections + RESERVED_DESCRIPTORS <= compose["ulimits"]["nofile"]["soft"]
    assert compose["cap_drop"] == ["ALL"] and compose["read_only"] is True
    assert compose["environment"]["NETPROBE_HEALTH_URL"].endswith("/netprobe/v1/hello")
