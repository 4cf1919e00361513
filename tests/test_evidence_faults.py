"""Store faults on real mechanisms: a full tmpfs (ENOSPC), a read-only remount, SIGKILL at
random points of store writes and key rotations. For each: no stored record lost or corrupted,
the failure is a StoreError (which the agent counts), the data budget still counts the bytes,
and the results kept in memory are written once the store works again."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentproc import AgentProcess, wait_for, write_config
from compliance_records import record

from netprobe.compliance.evidence import verify_chain
from netprobe.errors import StoreError
from netprobe.store import Store, moved_bytes

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def padded(when: str, pad_bytes: int = 20_000) -> dict:
    return record(when) | {"pad": "x" * pad_bytes}


@contextlib.contextmanager
def mounted(directory: Path, options: str) -> Iterator[Path]:
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def check_store(path: Path, expected_ids: list[str]) -> None:
    store = Store(path)
    records = store.records()
    assert [r["id"] for r in records] == expected_ids  # nothing lost, nothing out of order
    assert verify_chain(records).count == len(expected_ids)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


@needs_root
def test_a_full_disk_fails_counted_keeps_the_result_and_writes_it_later(tmp_path: Path) -> None:
    with mounted(tmp_path / "small", "size=640k") as small:
        store = Store(small / "results.db")
        stored: list[str] = []
        failure = None
        for hour in range(200):
            result = padded(f"2026-03-02T{hour % 24:02d}:{hour // 24:02d}")
            try:
                stored.append(store.add(result)["id"])
            except StoreError as exc:
                failure = exc
                break
        assert failure is not None and "full" in str(failure)
        assert [r["id"] for r in store.pending] == [result["id"]]
        # The budget counts the bytes that could not be stored.
        used = store.bytes_since("2026-01-01")
        assert used == moved_bytes(result) * (len(stored) + 1)
        subprocess.run(["mount", "-o", "remount,size=8m", str(small)], check=True)
        later = store.add(padded("2026-03-10T00:00"))
        store.close()
        check_store(small / "results.db", [*stored, result["id"], later["id"]])


@needs_root
def test_a_read_only_store_opens_for_reading_and_catches_up_when_writable(
    tmp_path: Path,
) -> None:
    with mounted(tmp_path / "state", "size=8m") as state:
        store = Store(state / "results.db")
        first = store.add(padded("2026-03-02T10:00"))["id"]
        store.close()
        # Linux refuses a read-only remount while files are open for writing, so the store is
        # opened afresh on the read-only file system, as the agent does at start.
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        store = Store(state / "results.db")
        assert store.read_only is not None
        assert [r["id"] for r in store.records()] == [first]
        kept = padded("2026-03-02T11:00")
        with pytest.raises(StoreError, match="read-only file system"):
            store.add(kept)
        assert store.bytes_since("2026-03-02") == 2 * moved_bytes(kept)  # stored + kept
        subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        last = store.add(padded("2026-03-02T13:00"))["id"]
        assert store.read_only is None
        store.close()
        check_store(state / "results.db", [first, kept["id"], last])


_WRITER = """
import sys
from pathlib import Path
from netprobe.store import Store
store = Store(Path(sys.argv[1]))
n = int(sys.argv[2])
while True:
    n += 1
    if n % 7 == 0:
        sealed = store.rotate_key("test")
    else:
        sealed = store.add({"id": f"r{n}", "kind": "line",
                            "started_at": "2026-11-28T00:00:00+00:00", "pad": "x" * 5000})
    print(sealed["id"], flush=True)
"""


def test_sigkill_at_random_points_loses_no_stored_record(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    rng = random.Random(13)
    reported: list[str] = []
    for round_number in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(round_number * 1000)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        # The first round may die while making the key; later ones mid-record or mid-rotation.
        time.sleep(rng.uniform(0.0, 0.1) if round_number == 0 else rng.uniform(0.3, 1.0))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert writer.stdout is not None
        reported += [line.strip() for line in writer.stdout if line.strip()]
        store = Store(path)
        ids = [r["id"] for r in store.records()]
        assert set(reported) <= set(ids)  # every record reported stored is there
        # At most one per kill was committed but not yet reported when the kill came.
        assert len(set(ids) - set(reported)) <= round_number + 1
        if ids:
            assert verify_chain(store.records()).count == len(ids)
            store.signing_key()  # the key continues the chain, rotations included
        store.close()
    assert len(reported) > 20 and any(r for r in reported if not r.startswith("r"))


def test_an_agent_with_a_broken_key_and_a_leftover_mark_stays_up_and_says_so(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "results.db")
    store.add(record("2026-03-02T10:00"))
    mark = record("2026-03-02T11:00") | {"outcome": "aborted"}
    store.begin(mark)
    fingerprint = store.key_fingerprint()
    store.close()
    key = tmp_path / "probe.key"
    original = key.read_bytes()
    key.write_bytes(b"")  # what a power cut during the write left
    config = write_config(tmp_path, servers=[{"url": "http://127.0.0.1:9"}])
    agent = AgentProcess(config)
    try:
        # Up and serving; the first scheduled test (a refused server) could not be stored.
        wait_for(
            "the unstored result in the metrics",
            lambda: agent.metrics().get("netprobe_store_unstored_results", 0) >= 1,
        )
        assert agent.metrics()["netprobe_store_errors_total"] >= 2  # the mark, the test
        assert "is empty" in agent.log.read_text()
        assert not any(k.startswith("netprobe_evidence_key_info") for k in agent.metrics())
    finally:
        assert agent.stop() == 0
    # The key restored from backup: the interrupted test is recorded at the next start.
    key.write_bytes(original)
    agent = AgentProcess(config)
    try:
        metrics = agent.metrics()
        assert metrics[f'netprobe_evidence_key_info{{fingerprint="{fingerprint}"}}'] == 1
    finally:
        assert agent.stop() == 0
    with contextlib.closing(Store(tmp_path / "results.db")) as reopened:
        assert mark["id"] in [r["id"] for r in reopened.records()]
        assert verify_chain(reopened.records()).count >= 2


@needs_root
def test_an_agent_on_a_full_disk_keeps_serving_counts_the_bytes_and_keeps_the_result(
    tmp_path: Path,
) -> None:
    with mounted(tmp_path / "state", "size=2m") as state:
        config = write_config(
            tmp_path,  # the configuration and the log outside the full file system
            store={"path": str(state / "results.db")},
            embedded_server={"host": "127.0.0.1", "port": 0, "download_rate": "40Mbit"},
            measurement={"max_bytes": "8MB"},
            budget={"monthly": "12MB"},
            schedule={
                "mean_interval": "2s",
                "min_interval": "1s",
                "max_interval": "3s",
                "startup_delay": "2s",
            },
        )
        agent = AgentProcess(config)
        try:
            filler = state / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as handle:
                while True:  # fill the file system to its last byte
                    handle.write(b"\0" * 65536)
                    handle.flush()
            wait_for(
                "the unstored result in the metrics",
                lambda: agent.metrics().get("netprobe_store_unstored_results", 0) >= 1,
            )
            # Still serving; the bytes of the test that could not be stored count against the
            # budget, so the next test is skipped rather than overshooting it.
            wait_for(
                "the budget skip",
                lambda: (
                    agent.metrics().get('netprobe_tests_skipped_total{reason="budget"}', 0) >= 1
                ),
            )
            metrics = agent.metrics()
            assert metrics["netprobe_data_used_bytes"] >= 8e6
            assert metrics["netprobe_store_errors_total"] >= 1
            assert agent.healthy()
            assert "database or disk is full" in agent.log.read_text()
            filler.unlink()  # space again: the result kept in memory is written at the stop
        finally:
            assert agent.stop() == 0
        tests_run = len(re.findall(r"line test (ok|failed)", agent.log.read_text()))
        with contextlib.closing(Store(state / "results.db")) as store:
            records = store.records()
            assert len(records) == tests_run >= 1  # records lost: 0
            assert verify_chain(records).count == tests_run
