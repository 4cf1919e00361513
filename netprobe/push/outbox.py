"""The durable outbox: scraped samples wait in SQLite until the receiver has acknowledged them.

A SQLite file of its own (the agent keeps it beside the results store, `push-outbox.db`), WAL,
one connection used from one thread. One row per scrape keeps SD-card writes to one small
commit per interval; label sets are stored once in `push_series` and referred to by id.

    outbox = Outbox.open("/var/lib/netprobe/push-outbox.db")
    outbox.enqueue(timestamp_ms, [(labels, value), ...], max_age_ms=..., max_samples=...)
    batch = outbox.oldest(max_samples=5000)
    ... send batch.series() ...
    outbox.remove(batch)

Rows leave in insertion order, and a scrape older than the newest queued one is refused, so
every series goes out in time order across outages and restarts. After a confirmed backwards
clock jump, `reanchor` drops the queued scrapes stamped by the clock that was ahead.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from netprobe.errors import StoreError
from netprobe.push.writerequest import Sample

SeriesLabels = tuple[tuple[str, str], ...]  # sorted by name: the identity of a series

_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_series (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    labels TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS push_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp_ms INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    samples TEXT NOT NULL
);
"""


@dataclass
class Batch:
    """Consecutive queued scrapes, oldest first: what one remote_write request carries."""

    row_ids: list[int]
    sample_count: int
    by_series: dict[SeriesLabels, list[Sample]] = field(default_factory=dict)

    def series(self) -> list[tuple[SeriesLabels, list[Sample]]]:
        """(labels, samples in time order) for each series in the batch."""
        return list(self.by_series.items())


@dataclass
class Trimmed:
    """Samples the outbox gave up on, by reason (`expired`, `overflow`, `clock_backwards`)."""

    samples_by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, samples: int) -> None:
        if samples:
            self.samples_by_reason[reason] = self.samples_by_reason.get(reason, 0) + samples


class Outbox:
    """Queued samples in the `push_outbox` and `push_series` tables of a SQLite file."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._series_ids: dict[SeriesLabels, int] = {}
        self._labels_by_id: dict[int, SeriesLabels] = {}
        self.queued_samples = 0
        self._newest_ms: int | None = None
        self._count_queued()

    @classmethod
    def open(cls, path: str) -> Outbox:
        """The outbox in the SQLite file at `path`, created if needed (WAL mode)."""
        try:
            connection = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            with connection:
                connection.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the push outbox in {path}: {exc}") from None
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    @property
    def newest_ms(self) -> int | None:
        """The stamp of the newest queued scrape, if any."""
        return self._newest_ms

    def reanchor(self, timestamp_ms: int) -> Trimmed:
        """Drop queued scrapes stamped at or after `timestamp_ms`: the clock was ahead then."""
        trimmed = Trimmed()
        try:
            with self._db:
                (ahead,) = self._db.execute(
                    "SELECT COALESCE(SUM(sample_count), 0) FROM push_outbox WHERE timestamp_ms >= ?",
                    (timestamp_ms,),
                ).fetchone()
                self._db.execute("DELETE FROM push_outbox WHERE timestamp_ms >= ?", (timestamp_ms,))
                self.queued_samples -= ahead
                self._forget_unused_series()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot drop samples stamped ahead from the outbox: {exc}") from None
        finally:
            self._forget_cached_ids()
            self._count_queued()
        trimmed.add("clock_backwards", ahead)
        return trimmed

    def enqueue(
        self,
        timestamp_ms: int,
        samples: Sequence[tuple[SeriesLabels, float]],
        *,
        max_age_ms: int,
        max_samples: int,
    ) -> Trimmed:
        """Queue one scrape, then drop what is older than `max_age_ms` or beyond `max_samples`."""
        trimmed = Trimmed()
        if self._newest_ms is not None and timestamp_ms <= self._newest_ms:
            trimmed.add("clock_backwards", len(samples))
            return trimmed
        try:
            with self._db:
                rows = [
                    [self._series_id(labels), _encode_value(value)] for labels, value in samples
                ]
                self._db.execute(
                    "INSERT INTO push_outbox (timestamp_ms, sample_count, samples) VALUES (?, ?, ?)",
                    (timestamp_ms, len(rows), json.dumps(rows, separators=(",", ":"))),
                )
                self._newest_ms = timestamp_ms
                self.queued_samples += len(rows)
                self._trim(timestamp_ms - max_age_ms, max_samples, trimmed)
        except sqlite3.Error as exc:
            self._forget_cached_ids()
            self._count_queued()
            raise StoreError(f"cannot queue samples for push: {exc}") from None
        return trimmed

    def oldest(self, max_samples: int) -> Batch | None:
        """The oldest queued scrapes, as many as fit in `max_samples` (at least one)."""
        batch = Batch(row_ids=[], sample_count=0)
        cursor = self._db.execute(
            "SELECT id, timestamp_ms, sample_count, samples FROM push_outbox ORDER BY id"
        )
        for row_id, timestamp_ms, count, encoded in cursor:
            if batch.row_ids and batch.sample_count + count > max_samples:
                break
            batch.row_ids.append(row_id)
            batch.sample_count += count
            for series_id, value in json.loads(encoded):
                labels = self._labels(series_id)
                batch.by_series.setdefault(labels, []).append((timestamp_ms, _decode_value(value)))
        cursor.close()
        return batch if batch.row_ids else None

    def remove(self, batch: Batch) -> None:
        """Forget a batch the receiver accepted or refused for good."""
        try:
            with self._db:
                self._db.executemany(
                    "DELETE FROM push_outbox WHERE id = ?", [(i,) for i in batch.row_ids]
                )
                self.queued_samples -= batch.sample_count
                self._forget_unused_series()
        except sqlite3.Error as exc:
            self._forget_cached_ids()
            self._count_queued()
            raise StoreError(f"cannot remove pushed samples from the outbox: {exc}") from None

    def _count_queued(self) -> None:
        row = self._db.execute(
            "SELECT COALESCE(SUM(sample_count), 0), MAX(timestamp_ms) FROM push_outbox"
        ).fetchone()
        self.queued_samples = int(row[0])
        self._newest_ms = row[1]

    def _trim(self, oldest_kept_ms: int, max_samples: int, trimmed: Trimmed) -> None:
        (expired,) = self._db.execute(
            "SELECT COALESCE(SUM(sample_count), 0) FROM push_outbox WHERE timestamp_ms < ?",
            (oldest_kept_ms,),
        ).fetchone()
        if expired:
            self._db.execute("DELETE FROM push_outbox WHERE timestamp_ms < ?", (oldest_kept_ms,))
            self.queued_samples -= expired
            trimmed.add("expired", expired)
        while self.queued_samples > max_samples:
            row = self._db.execute(
                "SELECT id, sample_count FROM push_outbox ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None or row[0] is None:
                break
            self._db.execute("DELETE FROM push_outbox WHERE id = ?", (row[0],))
            self.queued_samples -= row[1]
            trimmed.add("overflow", row[1])

    def _series_id(self, labels: SeriesLabels) -> int:
        known = self._series_ids.get(labels)
        if known is not None:
            return known
        text = json.dumps(labels, separators=(",", ":"))
        self._db.execute("INSERT OR IGNORE INTO push_series (labels) VALUES (?)", (text,))
        (series_id,) = self._db.execute(
            "SELECT id FROM push_series WHERE labels = ?", (text,)
        ).fetchone()
        self._series_ids[labels] = series_id
        self._labels_by_id[series_id] = labels
        return int(series_id)

    def _labels(self, series_id: int) -> SeriesLabels:
        known = self._labels_by_id.get(series_id)
        if known is None:
            (text,) = self._db.execute(
                "SELECT labels FROM push_series WHERE id = ?", (series_id,)
            ).fetchone()
            known = tuple((str(name), str(value)) for name, value in json.loads(text))
            self._labels_by_id[series_id] = known
        return known

    def _forget_unused_series(self) -> None:
        # An empty outbox refers to no series: drop them all so the table cannot grow forever.
        if self.queued_samples == 0:
            self._db.execute("DELETE FROM push_series")
            self._forget_cached_ids()

    def _forget_cached_ids(self) -> None:
        self._series_ids.clear()
        self._labels_by_id.clear()


def canonical_labels(labels: Iterable[tuple[str, str]]) -> SeriesLabels:
    """Labels sorted by name, as a hashable tuple: the identity of a series."""
    return tuple(sorted(labels))


def _encode_value(value: float) -> float | str:
    # JSON has no NaN or infinities; Prometheus uses all three (NaN marks e.g. an empty ratio).
    return value if math.isfinite(value) else repr(value)


def _decode_value(value: float | str) -> float:
    return float(value)
