"""The results store: every result, sealed into the evidence chain, in one SQLite file.

    store = Store(Path("/var/lib/netprobe/results.db"))
    sealed = store.add(result.to_dict())      # durable when it returns; carries "evidence"
    store.records(kind="line", since="2026-11-01T00:00:00+00:00")
    store.close()

A row holds the full JSON record (per-interval samples, conditions, method, evidence) plus a
few indexed columns for queries. The database runs in WAL mode with `synchronous=FULL`: the
agent writes about one row per test, so paying an fsync per commit costs nothing that matters
and a result reported as stored survives power loss, not only a crash of the process.

A test in progress is marked with `begin()` (a committed row of its own); `add()` of its result
removes the mark in the same transaction. Marks still present when the store is next opened by
the agent belong to tests that a crash or power cut interrupted; `recover_interrupted()` turns
each into an "aborted" result, so the interruption is part of the record.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from netprobe.compliance.evidence import GENESIS, ProbeKey, seal_record
from netprobe.configschema import DURATION, Key
from netprobe.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    started_at TEXT NOT NULL,
    run_id TEXT,
    outcome TEXT,
    valid INTEGER,
    moved_bytes INTEGER NOT NULL DEFAULT 0,
    hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_kind_started ON results (kind, started_at);
CREATE INDEX IF NOT EXISTS results_started ON results (started_at);
CREATE INDEX IF NOT EXISTS results_run ON results (run_id);
CREATE INDEX IF NOT EXISTS results_outcome ON results (outcome, valid);
CREATE TABLE IF NOT EXISTS running (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chain (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER, hash TEXT);
"""


def moved_bytes(record: dict[str, Any]) -> int:
    """Bytes a result moved over the line: its directions' totals (line tests) or bytes
    (drive probes), else its own `total_bytes`."""
    total = 0
    for direction in ("download", "upload"):
        part = record.get(direction)
        if isinstance(part, dict):
            total += int(part.get("total_bytes") or part.get("bytes") or 0)
    return total or int(record.get("total_bytes") or 0)


@dataclass
class StoreConfig:
    """The `store:` section; the probe key defaults to `probe.key` beside the database."""

    path: str = "/var/lib/netprobe/results.db"
    key_file: str | None = None
    retention_seconds: Annotated[float, DURATION, Key("retention")] = 400 * 86400.0


class Store:
    """Durable, append-only results with a hash chain; one writer (the agent), many readers."""

    def __init__(self, path: Path, key_path: Path | None = None) -> None:
        self.path = path
        self.key_path = key_path or path.with_name("probe.key")
        self._key: ProbeKey | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the results store {path}: {exc}") from None

    def _seal_and_insert(self, record: dict[str, Any]) -> dict[str, Any]:
        if self._key is None:
            self._key = ProbeKey.load_or_create(self.key_path)
        row = self.db.execute("SELECT seq, hash FROM chain WHERE one = 1").fetchone()
        seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS)
        body = {k: v for k, v in record.items() if k != "evidence"}
        sealed = {**body, "evidence": seal_record(body, seq, prev_hash, self._key)}
        self.db.execute(
            "INSERT INTO results (seq, id, kind, started_at, run_id, outcome, valid, moved_bytes,"
            " hash, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                str(body["id"]),
                str(body.get("kind", "")),
                str(body.get("started_at", "")),
                body.get("run_id"),
                body.get("outcome"),
                None if body.get("valid") is None else int(bool(body["valid"])),
                moved_bytes(body),
                sealed["evidence"]["hash"],
                json.dumps(sealed, separators=(",", ":")),
            ),
        )
        self.db.execute(
            "INSERT INTO chain (one, seq, hash) VALUES (1, ?, ?)"
            " ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (seq, sealed["evidence"]["hash"]),
        )
        self.db.execute("DELETE FROM running WHERE id = ?", (str(body["id"]),))
        return sealed

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Seal `record` (needs "id"; "kind", "started_at" are indexed) and store it durably."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                sealed = self._seal_and_insert(record)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the results store {self.path}: {exc}") from None
        return sealed

    def begin(self, placeholder: dict[str, Any]) -> None:
        """Mark a test as running; `placeholder` is the record to store if it never finishes."""
        try:
            self.db.execute(
                "INSERT OR REPLACE INTO running (id, record) VALUES (?, ?)",
                (str(placeholder["id"]), json.dumps(placeholder)),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the results store {self.path}: {exc}") from None

    def recover_interrupted(self) -> list[dict[str, Any]]:
        """Store the placeholder of every test left running by a crash; return them sealed."""
        rows = self.db.execute("SELECT record FROM running ORDER BY rowid").fetchall()
        return [self.add(json.loads(row[0])) for row in rows]

    def records(
        self, kind: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored records in chain order; `since`/`until` compare ISO 8601 UTC `started_at`."""
        clauses, args = [], []
        for clause, value in (
            ("kind = ?", kind),
            ("started_at >= ?", since),
            ("started_at < ?", until),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        try:
            rows = self.db.execute(f"SELECT record FROM results{where} ORDER BY seq", args)
            return [json.loads(row[0]) for row in rows]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the results store {self.path}: {exc}") from None

    def last(self, kind: str) -> dict[str, Any] | None:
        """The newest record of a kind."""
        row = self.db.execute(
            "SELECT record FROM results WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def bytes_since(self, since: str) -> int:
        """Bytes moved by results started at or after `since` (the data budget's count)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(moved_bytes), 0) FROM results WHERE started_at >= ?", (since,)
        ).fetchone()
        return int(row[0])

    def prune(self, before: str) -> int:
        """Delete records started before `before`; the chain stays verifiable from the oldest kept."""
        try:
            return self.db.execute("DELETE FROM results WHERE started_at < ?", (before,)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prune the results store {self.path}: {exc}") from None

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
