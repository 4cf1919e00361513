"""The results store: every result, sealed into the evidence chain, in one SQLite file.

    store = Store(Path("/var/lib/netprobe/results.db"))
    sealed = store.add(result.to_dict())      # durable when it returns; carries "evidence"
    records = store.records(since="2026-11-01T00:00:00+00:00")   # a contiguous piece of chain
    head = store.sign_head(records)           # what `report verify` checks the export against
    store.close()

A row holds the full JSON record (per-interval samples, conditions, method, evidence) plus a
few indexed columns for queries. The database runs in WAL mode with `synchronous=FULL`: the
agent writes about one row per test, so paying an fsync per commit costs nothing that matters
and a result reported as stored survives power loss, not only a crash of the process.

A test in progress is marked with `begin()` (a committed row of its own); `add()` of its result
removes the mark in the same transaction. Marks still present when the store is next opened by
the agent belong to tests that a crash or power cut interrupted; `recover_interrupted()` turns
each into an "aborted" result, so the interruption is part of the record.

Periods and retention follow chain position, not the clock: a period is the stretch of chain
from its first to its last record stamped inside it, and pruning removes a prefix of the chain.
A record stamped 1970 (a test before the clock was set) never cuts a hole in an export.

The probe key is created only for a store that has never sealed a record; after that a missing
or corrupt key file makes every `add()` fail with a StoreError naming the file, because a new
key would silently start a chain nobody pinned. A result that cannot be written (full disk,
read-only store, key problem) is kept in memory, counted in `bytes_since()` so the data budget
still holds, and written before the next result once the store works again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from netprobe.compliance.evidence import (
    GENESIS,
    KEY_ROTATION,
    ChainSummary,
    KeyFileError,
    ProbeKey,
    fsync_directory,
    key_fingerprint,
    record_body,
    seal_record,
    sign_head,
)
from netprobe.configschema import DURATION, Key
from netprobe.errors import StoreError
from netprobe.results import new_id, utc_now_iso, without_secrets

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
CREATE TABLE IF NOT EXISTS chain (
    one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER, hash TEXT, public_key TEXT
);
"""
# Results kept in memory while the store cannot take them; beyond this the oldest are dropped.
MAX_PENDING_RECORDS = 1000


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
        self.pending: list[dict[str, Any]] = []
        self.dropped_records = 0
        self.last_error: str | None = None
        self.read_only: str | None = None  # why the store could only be opened for reading
        try:
            self.db = self._open_writable()
        except (sqlite3.Error, OSError) as exc:
            # A read-only or full file system: serve what is stored, keep new results in
            # memory, and try to write again with every add().
            self.read_only = self._unwritable(exc)
            self.db = self._open_read_only(exc)

    def _unwritable(self, exc: BaseException) -> str:
        """Why the store cannot be written, better than SQLite's "unable to open"."""
        with contextlib.suppress(OSError):
            if os.statvfs(self.path.parent).f_flag & os.ST_RDONLY:
                return "it is on a read-only file system"
            if not os.access(self.path.parent, os.W_OK):
                return "its directory is not writable by this user"
        return _why(exc)

    def _open_writable(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(chain)")}
            if "public_key" not in columns:
                db.execute("ALTER TABLE chain ADD COLUMN public_key TEXT")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _open_read_only(self, first: BaseException) -> sqlite3.Connection:
        if not self.path.exists():
            raise StoreError(f"cannot open the results store {self.path}: {_why(first)}")
        # `immutable` when even the shared-memory file cannot be made (a read-only mount).
        for mode in ("ro", "ro&immutable=1"):
            try:
                db = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, timeout=30.0)
                db.execute("SELECT seq FROM chain LIMIT 1").fetchall()
                return db
            except sqlite3.Error:
                continue
        raise StoreError(f"cannot open the results store {self.path}: {_why(first)}")

    def _writable(self) -> None:
        """Switch a store opened read-only back to writing once its file system allows it."""
        if self.read_only is None:
            return
        try:
            db = self._open_writable()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot write to the results store {self.path}: {self._unwritable(exc)}"
            ) from None
        self.db.close()
        self.db, self.read_only = db, None

    # -- the probe key ----------------------------------------------------------------------
    @property
    def _rotation_path(self) -> Path:
        return self.key_path.with_name(self.key_path.name + ".next")

    def _chain_state(self) -> tuple[int, str, str | None] | None:
        """(last seq, last hash, key in force) of the chain, or None before its first record."""
        row = self.db.execute("SELECT seq, hash, public_key FROM chain WHERE one = 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]), row[2])

    def signing_key(self) -> ProbeKey:
        """The key that continues this store's chain; StoreError when it is lost or wrong."""
        if self._key is not None:
            return self._key
        state = self._chain_state()
        expected = state[2] if state else None
        try:
            if state is None and not self.key_path.exists():
                self._key = ProbeKey.create(self.key_path)
                return self._key
            if self._rotation_path.exists():
                self._finish_rotation(expected)
            key = ProbeKey.load(self.key_path)
        except KeyFileError as exc:
            raise StoreError(
                f"{exc}; results are not stored until the probe key is restored "
                "(a new key would start a chain nobody pinned)"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot write the key file {self.key_path}: {_why(exc)}") from None
        if expected is not None and key.public_key_b64 != expected:
            raise StoreError(
                f"the key file {self.key_path} holds key {key.fingerprint}, but the chain "
                f"continues with key {key_fingerprint(expected)}: restore the probe's key"
            )
        self._key = key
        return key

    def key_fingerprint(self) -> str | None:
        """The fingerprint of the key that signs new results, or None while it is unusable."""
        try:
            return self.signing_key().fingerprint
        except StoreError:
            return None

    def _finish_rotation(self, expected: str | None) -> None:
        """A rotation cut short between its record and the rename: finish or discard it."""
        pending = ProbeKey.load(self._rotation_path)
        if pending.public_key_b64 == expected:
            os.replace(self._rotation_path, self.key_path)
            fsync_directory(self.key_path.parent)
        else:
            self._rotation_path.unlink()

    def rotate_key(self, reason: str = "scheduled rotation") -> dict[str, Any]:
        """Switch to a new key through a `key_rotation` record signed by the current key."""
        self.signing_key()
        new = ProbeKey.generate()
        record = {
            "id": new_id(),
            "kind": KEY_ROTATION,
            "started_at": utc_now_iso(),
            "new_public_key": new.public_key_b64,
            "reason": reason,
        }
        try:
            # The new key is on disk before the record naming it is committed, so a power cut
            # in between can always be finished (see `signing_key`).
            new.write(self._rotation_path)
        except OSError as exc:
            raise StoreError(f"cannot write the key file {self.key_path}: {_why(exc)}") from None
        try:
            self._writable()
            sealed = self._insert_all([*self.pending, record])[-1]
        except StoreError:
            self._rotation_path.unlink()
            raise
        self.pending = []
        try:
            os.replace(self._rotation_path, self.key_path)
            fsync_directory(self.key_path.parent)
        except OSError as exc:
            raise StoreError(
                f"key rotated, but {self.key_path} could not be replaced ({_why(exc)}); "
                f"the new key waits in {self._rotation_path}"
            ) from None
        self._key = new
        return sealed

    # -- writing ----------------------------------------------------------------------------
    def _seal_and_insert(self, record: dict[str, Any]) -> dict[str, Any]:
        state = self._chain_state()
        if self._key is not None and state and state[2] not in (None, self._key.public_key_b64):
            self._key = None  # rotated by another process (`netprobe evidence rotate`)
        key = self.signing_key()
        seq, prev_hash = (state[0] + 1, state[1]) if state else (1, GENESIS)
        body = record_body(record)
        sealed = {**body, "evidence": seal_record(body, seq, prev_hash, key)}
        current_key = (
            str(body["new_public_key"]) if body.get("kind") == KEY_ROTATION else key.public_key_b64
        )
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
            "INSERT INTO chain (one, seq, hash, public_key) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
            " public_key = excluded.public_key",
            (seq, sealed["evidence"]["hash"], current_key),
        )
        self.db.execute("DELETE FROM running WHERE id = ?", (str(body["id"]),))
        return sealed

    def _insert_all(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Seal and store `records` in one durable transaction, all or none."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                sealed = [self._seal_and_insert(record) for record in records]
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise StoreError(
                f"cannot write to the results store {self.path}: {_why(exc)}"
            ) from None
        return sealed

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Seal `record` (needs "id"; "kind", "started_at" are indexed) and store it durably.

        URLs in it are stored without credentials or query values (`without_secrets`).
        On failure (StoreError) the record is kept in memory and stored, in order, before the
        next one; its bytes still count in `bytes_since()`.
        """
        batch = [*self.pending, without_secrets(record_body(record))]
        try:
            self._writable()
            sealed = self._insert_all(batch)
        except StoreError as exc:
            self.last_error = str(exc)
            self.pending = batch[-MAX_PENDING_RECORDS:]
            self.dropped_records += len(batch) - len(self.pending)
            raise
        self.pending = []
        self.last_error = None
        return sealed[-1]

    def begin(self, placeholder: dict[str, Any]) -> None:
        """Mark a test as running; `placeholder` is the record to store if it never finishes."""
        self._writable()
        try:
            self.db.execute(
                "INSERT OR REPLACE INTO running (id, record) VALUES (?, ?)",
                (str(placeholder["id"]), json.dumps(placeholder)),
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot write to the results store {self.path}: {_why(exc)}"
            ) from None

    def recover_interrupted(
        self, on_error: Callable[[StoreError], None] | None = None
    ) -> list[dict[str, Any]]:
        """Store the placeholder of every test left running by a crash; return them sealed.

        A mark that cannot be stored now (full disk, key problem) stays for the next start and
        is handed to `on_error`: it never stops the agent from starting.
        """
        try:
            rows = self.db.execute("SELECT record FROM running ORDER BY rowid").fetchall()
        except sqlite3.Error as exc:
            rows = []
            if on_error is not None:
                on_error(StoreError(f"cannot read the results store {self.path}: {_why(exc)}"))
        recovered = []
        for row in rows:
            try:
                self._writable()
                recovered.extend(self._insert_all([json.loads(row[0])]))
            except StoreError as exc:
                self.last_error = str(exc)
                if on_error is not None:
                    on_error(exc)
                break
        return recovered

    # -- reading ----------------------------------------------------------------------------
    def records(
        self, kind: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored records in chain order: the contiguous stretch from the first to the last
        record started in `[since, until)` (ISO 8601 UTC), so a record with a wrong clock in
        between stays in its place. `kind` then keeps only records of that kind (a thinned
        list: for metrics and CSV, not for sealed exports)."""
        try:
            low, high = self._seq_range(since, until)
            query = "SELECT record FROM results WHERE seq BETWEEN ? AND ?"
            args: list[object] = [low, high]
            if kind is not None:
                query += " AND kind = ?"
                args.append(kind)
            rows = self.db.execute(query + " ORDER BY seq", args)
            return [json.loads(row[0]) for row in rows]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the results store {self.path}: {_why(exc)}") from None

    def _seq_range(self, since: str | None, until: str | None) -> tuple[int, int]:
        clauses, args = [], []
        for clause, value in (("started_at >= ?", since), ("started_at < ?", until)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        row = self.db.execute(f"SELECT MIN(seq), MAX(seq) FROM results{where}", args).fetchone()
        return (0, -1) if row[0] is None else (int(row[0]), int(row[1]))

    def sign_head(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The signed head of an export of `records` (a contiguous piece of this chain)."""
        if not records:
            raise StoreError("nothing to export: no stored records in that period")
        first, last = records[0]["evidence"], records[-1]["evidence"]
        current = (
            str(records[-1]["new_public_key"])
            if records[-1].get("kind") == KEY_ROTATION
            else str(last["public_key"])
        )
        summary = ChainSummary(
            count=len(records),
            first_seq=first["seq"],
            last_seq=last["seq"],
            anchor_hash=first["prev_hash"],
            last_hash=last["hash"],
            first_key=first["public_key"],
            current_key=current,
        )
        key = self.signing_key()
        if key.public_key_b64 != current:
            raise StoreError("the export ends before the probe's last key rotation")
        return sign_head(summary, key)

    def last(self, kind: str) -> dict[str, Any] | None:
        """The newest record of a kind."""
        row = self.db.execute(
            "SELECT record FROM results WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def bytes_since(self, since: str) -> int:
        """Bytes moved by results started at or after `since` (the data budget's count),
        including results that could not be stored yet."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(moved_bytes), 0) FROM results WHERE started_at >= ?", (since,)
        ).fetchone()
        unstored = sum(moved_bytes(r) for r in self.pending if str(r.get("started_at")) >= since)
        return int(row[0]) + unstored

    def prune(self, before: str) -> int:
        """Delete the oldest stretch of chain: every record before the first one started at or
        after `before`. The chain stays verifiable from the oldest kept (its `prev_hash`)."""
        try:
            row = self.db.execute(
                "SELECT MIN(seq) FROM results WHERE started_at >= ?", (before,)
            ).fetchone()
            if row[0] is None:
                return 0  # nothing newer to keep: a clock far ahead must not empty the store
            return self.db.execute("DELETE FROM results WHERE seq < ?", (row[0],)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prune the results store {self.path}: {_why(exc)}") from None

    def close(self) -> None:
        """Write the results kept in memory if the store takes them now, checkpoint the WAL
        into the database file, and close."""
        if self.pending:
            with contextlib.suppress(StoreError):
                self._writable()
                self._insert_all(self.pending)
                self.pending = []
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()


def _why(exc: BaseException) -> str:
    """The reason of a store error as a person reads it, without a raw errno."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)
