"""The results store: sealed records in chain order, interrupted tests recorded, exports that
`verify_chain` accepts, and no stored result lost when the writer is killed with SIGKILL."""

from __future__ import annotations

import csv
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netprobe.cli import app
from netprobe.compliance.evidence import EvidenceError, verify_chain, verify_export
from netprobe.results import DirectionResult, LineResult, Server
from netprobe.store import Store


def line_record(rate: float = 11e6, started_at: str = "2026-11-28T10:00:00+00:00") -> dict:
    result = LineResult(
        server=Server(url="http://198.18.0.2:8080"),
        download=DirectionResult(
            "download", ok=True, bytes_per_second=rate, bytes=50_000_000, total_bytes=60_000_000
        ),
        upload=DirectionResult(
            "upload", ok=True, bytes_per_second=rate / 5, bytes=10_000_000, total_bytes=12_000_000
        ),
        started_at=started_at,
    )
    return result.to_dict()


def test_added_records_come_back_sealed_in_a_verifiable_chain(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    sealed = [store.add(line_record(rate=r)) for r in (10e6, 11e6, 12e6)]
    assert [s["evidence"]["seq"] for s in sealed] == [1, 2, 3]
    assert store.records() == sealed
    assert verify_chain(store.records()).count == 3
    assert (tmp_path / "probe.key").exists()
    store.close()


def test_chain_continues_after_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    store.add(line_record())
    store.close()
    store = Store(tmp_path / "results.db")
    assert store.add(line_record())["evidence"]["seq"] == 2
    assert verify_chain(store.records()).count == 2


def test_altered_record_is_caught_by_verify_chain(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    first = store.add(line_record(rate=10e6))
    store.add(line_record(rate=11e6))
    first["download"]["bytes_per_second"] = 99e6
    store.db.execute("UPDATE results SET record = ? WHERE id = ?", (json.dumps(first), first["id"]))
    with pytest.raises(EvidenceError, match="altered"):
        verify_chain(store.records())


def test_running_mark_becomes_an_aborted_result_at_next_open(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    placeholder = line_record() | {"outcome": "aborted", "valid": False}
    store.begin(placeholder)
    store.db.close()  # as a crash would leave it: no add(), no close()
    store = Store(tmp_path / "results.db")
    (recovered,) = store.recover_interrupted()
    assert recovered["id"] == placeholder["id"] and recovered["outcome"] == "aborted"
    assert store.recover_interrupted() == []
    assert [r["outcome"] for r in store.records()] == ["aborted"]


def test_finishing_a_test_clears_its_running_mark(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    record = line_record()
    store.begin(record | {"outcome": "aborted"})
    store.add(record)
    assert store.recover_interrupted() == []
    assert [r["outcome"] for r in store.records()] == ["ok"]


def test_queries_by_kind_and_time_and_bytes_since(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    store.add(line_record(started_at="2026-10-31T23:00:00+00:00"))
    store.add(line_record(started_at="2026-11-02T08:00:00+00:00"))
    store.add(
        {"id": "d1", "kind": "drive", "started_at": "2026-11-03T08:00:00+00:00", "total_bytes": 5}
    )
    assert len(store.records(kind="line")) == 2
    assert len(store.records(since="2026-11-01T00:00:00+00:00")) == 2
    assert len(store.records(until="2026-11-01T00:00:00+00:00")) == 1
    assert store.bytes_since("2026-11-01T00:00:00+00:00") == 72_000_000 + 5


def test_pruning_keeps_the_rest_of_the_chain_verifiable(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    for day in (1, 2, 3):
        store.add(line_record(started_at=f"2026-11-0{day}T08:00:00+00:00"))
    assert store.prune("2026-11-02T00:00:00+00:00") == 1
    assert verify_chain(store.records()).count == 2
    assert store.add(line_record())["evidence"]["seq"] == 4


def test_export_jsonl_is_the_full_sealed_record_and_csv_has_a_row_per_direction(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "results.db")
    stored = [store.add(line_record(rate=r)) for r in (10e6, 11e6)]
    store.close()
    runner = CliRunner()
    jsonl = runner.invoke(app, ["results", "export", "--store", str(tmp_path / "results.db")])
    assert jsonl.exit_code == 0, jsonl.output
    head, *exported = [json.loads(line) for line in jsonl.output.splitlines()]
    assert exported == stored
    assert verify_export(exported, head, {stored[0]["evidence"]["public_key"]}).count == 2
    table = runner.invoke(
        app, ["results", "export", "--store", str(tmp_path / "results.db"), "--format", "csv"]
    )
    rows = list(csv.DictReader(io.StringIO(table.output)))
    assert [(r["direction"], float(r["bytes_per_second"])) for r in rows[:2]] == [
        ("download", 10e6),
        ("upload", 2e6),
    ]
    listing = runner.invoke(app, ["results", "list", "--store", str(tmp_path / "results.db")])
    header, *rows = listing.output.splitlines()
    assert listing.exit_code == 0 and len(rows) == 2
    assert header.split()[:5] == ["started", "(UTC)", "kind", "download", "upload"]
    assert "80.0 Mbit/s" in listing.output


def test_results_commands_refuse_a_missing_store_with_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["results", "list", "--store", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no results store" in result.output


_WRITER = """
import sys
from pathlib import Path
from netprobe.store import Store
store = Store(Path(sys.argv[1]))
n = 0
while True:
    n += 1
    sealed = store.add({"id": f"r{n}", "kind": "line", "started_at": "2026-11-28T00:00:00+00:00",
                        "pad": "x" * 20000})
    print(sealed["id"], flush=True)
"""


@pytest.mark.parametrize("after_records", [3, 40])
def test_sigkill_during_writes_loses_nothing_reported_stored(
    tmp_path: Path, after_records: int
) -> None:
    path = tmp_path / "results.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    reported = [writer.stdout.readline().strip() for _ in range(after_records)]
    time.sleep(0.05)  # let it be in the middle of further writes
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    reported += [line.strip() for line in writer.stdout if line.strip()]
    store = Store(path)
    stored = [r["id"] for r in store.records()]
    assert stored[: len(reported)] == reported
    assert len(stored) - len(reported) <= 1  # at most the one committed before its print
    assert verify_chain(store.records()).count == len(stored)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_is_readable_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    writer = Store(path)
    writer.add(line_record())
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    writer.add(line_record())
    assert reader.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2
