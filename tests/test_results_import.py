"""`netprobe results import`: real-format samples in, imported line tests out; bad lines named.

speedtest-cli's files were captured here from the real package against `netprobe serve`;
the Ookla CLI's and speedtest-tracker's are written from their published formats (see
tests/fixtures/import/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from netprobe.errors import ConfigError
from netprobe.results_import import detect_format, import_records, read_import
from netprobe.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "import"


def netprobe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netprobe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("speedtest-cli.json", "speedtest-cli-json"),
        ("speedtest-cli.csv", "speedtest-cli-csv"),
        ("ookla-cli.from-docs.jsonl", "ookla-json"),
        ("speedtest-tracker.from-docs.csv", "speedtest-tracker-csv"),
    ],
)
def test_each_format_is_recognised(name: str, fmt: str) -> None:
    assert detect_format((FIXTURES / name).read_text()) == fmt


def test_speedtest_cli_json_becomes_imported_line_tests_in_bytes_per_second() -> None:
    text = (FIXTURES / "speedtest-cli.json").read_text()
    first = json.loads(text.splitlines()[0])
    records = read_import(text, None, None, "speedtest-cli.json")
    assert len(records) == 2
    record = records[0]
    assert record["download"]["bytes_per_second"] == pytest.approx(first["download"] / 8)
    assert record["upload"]["bytes_per_second"] == pytest.approx(first["upload"] / 8)
    assert record["idle_latency_seconds"] == pytest.approx(first["ping"] / 1000)
    assert record["started_at"].startswith(first["timestamp"][:19])
    assert record["source"] == {
        "tool": "speedtest-cli",
        "format": "speedtest-cli-json",
        "file": "speedtest-cli.json",
        "line": 1,
    }
    assert record["download"]["method"]["measured_at"] == "imported"
    assert record["server"]["name"] == "netprobe serve (netprobe)"


def test_speedtest_cli_csv_gives_the_same_figures_as_its_columns() -> None:
    text = (FIXTURES / "speedtest-cli.csv").read_text()
    row = text.splitlines()[1].split(",")
    records = read_import(text, None, None)
    assert records[0]["download"]["bytes_per_second"] == pytest.approx(float(row[6]) / 8)
    assert records[0]["source"]["line"] == 2


def test_ookla_json_bandwidth_is_bytes_and_an_error_line_is_a_failed_test() -> None:
    records = read_import((FIXTURES / "ookla-cli.from-docs.jsonl").read_text(), None, None)
    assert records[0]["download"]["bytes_per_second"] == 11702345
    failed = records[1]
    assert failed["outcome"] == "failed" and failed["valid"] is False
    assert not failed["download"]["ok"]
    assert "Timeout occurred" in failed["download"]["error"]


def test_tracker_local_times_need_a_zone_and_then_are_read_in_it() -> None:
    text = (FIXTURES / "speedtest-tracker.from-docs.csv").read_text()
    with pytest.raises(ConfigError) as refused:
        read_import(text, None, None, "tracker.csv")
    assert "line 2: created_at: '2026-11-03 08:00:04' has no UTC offset" in str(refused.value)
    records = read_import(text, None, ZoneInfo("Europe/Berlin"), "tracker.csv")
    assert records[0]["started_at"].startswith("2026-11-03T07:00:04")
    assert records[0]["download"]["bytes_per_second"] == pytest.approx(93617640 / 8)
    assert records[1]["outcome"] == "failed"


def test_every_bad_line_is_named_with_its_field_and_nothing_is_imported(tmp_path: Path) -> None:
    done = netprobe(
        "results",
        "import",
        str(FIXTURES / "bad-lines.speedtest-cli.csv"),
        "--store",
        "results.db",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "netprobe: error: bad-lines.speedtest-cli.csv: 4 bad line(s), nothing imported:",
        "  line 3: download: 'fast' is not a number",
        "  line 4: timestamp: missing: every test needs the time it started",
        "  line 5: timestamp: '2026-12-04T14:30:00' has no UTC offset; give --timezone, the "
        "zone the tool wrote it in (e.g. Europe/Berlin)",
        "  line 6: line: 3 columns, expected 10 (Server ID, Sponsor, Server Name, Timestamp, "
        "Distance, Ping, Download, Upload, Share, IP Address)",
    ]
    assert "Traceback" not in done.stderr
    assert Store(tmp_path / "results.db").records() == []


def test_importing_twice_adds_nothing_and_the_export_reads_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    records = read_import((FIXTURES / "speedtest-cli.json").read_text(), None, None)
    assert import_records(store, records) == (2, 0)
    assert import_records(store, records) == (0, 2)
    store.close()
    for fmt in ("csv", "jsonl"):
        export = netprobe(
            "results", "export", "--store", "results.db", "--format", fmt, cwd=tmp_path
        )
        assert export.returncode == 0, export.stderr
        (tmp_path / f"export.{fmt}").write_text(export.stdout)
        back = netprobe(
            "results", "import", f"export.{fmt}", "--store", f"back-{fmt}.db", cwd=tmp_path
        )
        assert back.returncode == 0, back.stderr
        assert "imported 2 tests" in back.stdout
        again = Store(tmp_path / f"back-{fmt}.db").records()
        rates = sorted(r["download"]["bytes_per_second"] for r in again)
        assert rates == pytest.approx(sorted(r["download"]["bytes_per_second"] for r in records))
        assert all(r["source"]["tool"] == "speedtest-cli" for r in again)


def test_reports_name_the_imported_tests(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    import_records(store, read_import((FIXTURES / "speedtest-cli.json").read_text(), None, None))
    store.close()
    (tmp_path / "report.yml").write_text(
        "contract: {download: 100Mbit, upload: 20Mbit, operator: Lab Telecom}\n"
        "store: {path: results.db}\n"
    )
    done = netprobe("report", "--config", "report.yml", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["imported"]) == 2
    assert report["subscriber"]["operator"] == "Lab Telecom"
    html = netprobe("report", "--config", "report.yml", cwd=tmp_path).stdout
    assert "imported from speedtest-cli" in html
    assert "2 tests were imported from other tools" in html
