"""The agent configuration: good files load, each bad file gives exit 2 and one line naming
the file and the key (blackbox_exporter's testdata style: the file name says what is wrong)."""

from __future__ import annotations

import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netprobe.cli import app
from netprobe.config import load_config
from netprobe.peak import PeakHours

TESTDATA = Path(__file__).parent / "testdata" / "config"
CONFIGS = Path(__file__).parent.parent / "configs"

# bad file -> (file named in the message, key named in the message)
BAD = {
    "budget-monthly-in-bits.yml": ("budget-monthly-in-bits.yml", "budget.monthly"),
    "budget-reset-day-31.yml": ("budget-reset-day-31.yml", "reset_day"),
    "empty-file.yml": ("empty-file.yml", "contract"),
    "exporter-listen-without-port.yml": ("exporter-listen-without-port.yml", "listen"),
    "gates-cpu-threshold-not-a-number.yml": (
        "gates-cpu-threshold-not-a-number.yml",
        "gates.cpu_threshold_percent",
    ),
    "invalid-duration-schedule-mean-interval.yml": (
        "invalid-duration-schedule-mean-interval.yml",
        "schedule.mean_interval",
    ),
    "invalid-peak-hours.yml": ("invalid-peak-hours.yml", "peak_hours"),
    "invalid-rate-contract-download.yml": (
        "invalid-rate-contract-download.yml",
        "contract.download",
    ),
    "invalid-yaml-indentation.yml": ("invalid-yaml-indentation.yml", "line 3"),
    "min-interval-above-mean-interval.yml": (
        "min-interval-above-mean-interval.yml",
        "min_interval",
    ),
    "missing-contract-download.yml": ("missing-contract-download.yml", "contract.download"),
    "missing-contract.yml": ("missing-contract.yml", "contract"),
    "nested-aliases-billion-laughs.yml": ("nested-aliases-billion-laughs.yml", "aliases"),
    "no-servers.yml": ("no-servers.yml", "servers"),
    "rate-of-five-thousand-digits.yml": ("rate-of-five-thousand-digits.yml", "contract.download"),
    "server-url-without-scheme.yml": ("server-url-without-scheme.yml", "servers[0]: url"),
    "servers-not-a-list.yml": ("servers-not-a-list.yml", "servers"),
    "top-level-is-a-list.yml": ("top-level-is-a-list.yml", "expected a mapping"),
    "unknown-key-in-gates.yml": ("unknown-key-in-gates.yml", "gates.cross_trafic_threshold"),
    "unknown-measurement-direction.yml": (
        "unknown-measurement-direction.yml",
        "measurement.directions[1]",
    ),
    "unknown-server-protocol.yml": ("unknown-server-protocol.yml", "servers[0]: protocol"),
    "unknown-timezone.yml": ("unknown-timezone.yml", "timezone"),
    "unknown-top-level-key.yml": ("unknown-top-level-key.yml", "nonsense"),
    "web-config-missing-cert.yml": ("web-config-missing-cert.web.yml", "tls_server_config"),
    "web-config-plain-password.yml": (
        "web-config-plain-password.web.yml",
        "basic_auth_users.prometheus",
    ),
    "web-config-unknown-key.yml": ("web-config-unknown-key.web.yml", "http2"),
}


def test_every_bad_file_in_testdata_has_an_expectation() -> None:
    files = {p.name for p in TESTDATA.glob("*.yml") if not p.name.endswith(".web.yml")}
    assert files - {"good-minimal.yml"} == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_config_exits_2_with_one_line_naming_file_and_key(name: str) -> None:
    result = CliRunner().invoke(app, ["config", "check", str(TESTDATA / name)])
    file, key = BAD[name]
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert file in lines[0] and key in lines[0], lines[0]
    assert len(lines[0]) < 300 + len(str(TESTDATA / name)), lines[
        0
    ]  # short, however long the value


@pytest.mark.parametrize(
    "path", [TESTDATA / "good-minimal.yml", CONFIGS / "demo.yml", CONFIGS / "home.yml"]
)
def test_good_config_exits_0(path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output


def test_missing_file_exits_2_without_traceback_in_a_real_process(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yml"
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", "config", "check", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(missing) in done.stderr and "no such file" in done.stderr


def test_units_and_relative_store_path_are_resolved() -> None:
    config = load_config(CONFIGS / "demo.yml")
    assert config.contract.download == 100e6 / 8
    assert config.schedule.mean_interval_seconds == 60.0
    assert config.measurement.max_bytes == 200_000_000
    assert config.embedded_server is not None
    assert config.embedded_server.download_rate == 100e6 / 8
    assert config.store.path == str((CONFIGS / "demo-data" / "results.db").resolve())
    home = load_config(CONFIGS / "home.yml")
    assert home.gates.cross_traffic_threshold == 25_000.0
    assert home.contract.rates()["minimum"].download == 600e6 / 8


def test_peak_hours_are_read_on_the_probe_clock() -> None:
    evening = PeakHours.parse(["19:00-23:00"])
    berlin = load_config(CONFIGS / "home.yml").probe.zone()
    # 18:30 UTC in November is 19:30 in Berlin: peak there, not on a UTC clock.
    moment = datetime(2026, 11, 28, 18, 30, tzinfo=UTC)
    assert evening.is_peak(moment, berlin)
    assert not evening.is_peak(moment, UTC)


def test_peak_window_may_cross_midnight() -> None:
    night = PeakHours.parse(["22:00-01:00"])
    assert night.is_peak(datetime(2026, 1, 1, 0, 30, tzinfo=UTC), UTC)
    assert night.is_peak(datetime(2026, 1, 1, 22, 0, tzinfo=UTC), UTC)
    assert not night.is_peak(datetime(2026, 1, 1, 1, 0, tzinfo=UTC), UTC)


def test_a_file_over_1_mib_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yml"
    huge.write_text("# padding\n" * (110 * 1024))
    result = CliRunner().invoke(app, ["config", "check", str(huge)])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"netprobe: error: {huge}: larger than 1024 KiB, not a configuration"
    )


PEAK_MEMORY = """
import atexit, resource, runpy, sys
atexit.register(lambda: print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))
sys.argv = ["netprobe", "config", "check", sys.argv[1]]
runpy.run_module("netprobe", run_name="__main__")
"""


def peak_memory_kib(path: Path) -> tuple[int, str]:
    """`netprobe config check PATH` in a process of its own, capped at 2 GiB of address space."""
    cap_bytes = 2 * 1024**3
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes)),
    )
    *message, peak = done.stderr.strip().splitlines()
    assert done.returncode == (0 if path.name.startswith("good") else 2), done.stderr
    return int(peak), "\n".join(message)


def test_nested_aliases_cost_no_more_memory_than_a_good_file() -> None:
    good_kib, _ = peak_memory_kib(TESTDATA / "good-minimal.yml")
    bomb_kib, message = peak_memory_kib(TESTDATA / "nested-aliases-billion-laughs.yml")
    assert "nested aliases" in message and len(message) < 300, message[:300]
    assert bomb_kib < good_kib + 20 * 1024, (good_kib, bomb_kib)  # within 20 MiB of a good file
