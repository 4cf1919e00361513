"""Server receipts, server side: what the server itself saw of each test, signed on request.

`netprobe serve --key FILE` keeps a tally of every native test it serves (bytes over time as
the server itself sent or received them, streams, the client's address) and signs it when the
client asks, right after the test; the client stores the receipt inside its record, where
`netprobe.compliance.receipts` checks it:

    book = ReceiptBook(ProbeKey.load(Path("server.key")), name="lab-1")
    on_chunk = book.tally(test_id, "download", client="198.18.0.2")   # per request
    on_chunk(total_bytes, time.monotonic())                           # per chunk
    receipt = book.receipt("198.18.0.2", test_id, "download")        # signed dict, or None

GET /netprobe/v1/receipt?test=ID&direction=D answers the receipt; the server's public key is
served at /.well-known/netprobe-key so that a reader can pin it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from netprobe.compliance.evidence import ProbeKey
from netprobe.compliance.receipts import RECEIPT_TAG, receipt_digest

RECEIPT_PATH = "/netprobe/v1/receipt"
WELL_KNOWN_KEY_PATH = "/.well-known/netprobe-key"
SAMPLE_INTERVAL_SECONDS = 0.1
MAX_TIMELINE_POINTS = 1200
MAX_TALLIES = 1000
TALLY_KEEP_SECONDS = 600.0


@dataclass
class _Tally:
    client: str
    first_wall: datetime
    first_monotonic: float
    last_monotonic: float = 0.0
    total_bytes: int = 0
    streams: set[int] = field(default_factory=set)
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def add(self, n_bytes: int, now: float) -> None:
        self.total_bytes += n_bytes
        self.last_monotonic = now
        t = round(now - self.first_monotonic, 4)
        # The newest point moves until it is an interval past the one before it.
        if len(self.timeline) > 1 and t - self.timeline[-2][0] < SAMPLE_INTERVAL_SECONDS:
            self.timeline[-1] = (t, self.total_bytes)
        elif len(self.timeline) < MAX_TIMELINE_POINTS:
            self.timeline.append((t, self.total_bytes))
        else:
            self.timeline[-1] = (t, self.total_bytes)


class ReceiptBook:
    """What the server saw, per test and direction, and the key it signs receipts with."""

    def __init__(self, key: ProbeKey, name: str = "") -> None:
        self.key = key
        self.name = name
        # By client address too: a test id names a test only together with who ran it.
        self._tallies: dict[tuple[str, str, str], _Tally] = {}

    def public_info(self) -> dict[str, str]:
        """What /.well-known/netprobe-key answers."""
        return {
            "name": self.name,
            "public_key": self.key.public_key_b64,
            "fingerprint": self.key.fingerprint,
        }

    def tally(
        self, test_id: str, direction: str, client: str, stream: int = 0
    ) -> Callable[[int, float], None]:
        """The per-chunk callback of one request: (bytes so far in it, monotonic time)."""
        now = time.monotonic()
        self._expire(now)
        tally = self._tallies.get((client, test_id, direction))
        if tally is None:
            tally = _Tally(client, datetime.now(UTC), now, last_monotonic=now)
            tally.timeline.append((0.0, 0))
            self._tallies[(client, test_id, direction)] = tally
        tally.streams.add(stream)
        seen = 0

        def on_chunk(total: int, at: float) -> None:
            nonlocal seen
            tally.add(total - seen, at)
            seen = total

        return on_chunk

    def _expire(self, now: float) -> None:
        stale = [k for k, t in self._tallies.items() if now - t.last_monotonic > TALLY_KEEP_SECONDS]
        for key in stale:
            del self._tallies[key]
        while len(self._tallies) >= MAX_TALLIES:
            del self._tallies[next(iter(self._tallies))]

    def receipt(self, client: str, test_id: str, direction: str) -> dict[str, Any] | None:
        """The signed receipt of a client's test direction, or None when the server saw none."""
        tally = self._tallies.get((client, test_id, direction))
        if tally is None:
            return None
        seconds = max(tally.last_monotonic - tally.first_monotonic, 0.0)
        body: dict[str, Any] = {
            RECEIPT_TAG: 1,
            "test": test_id,
            "direction": direction,
            "bytes": tally.total_bytes,
            "streams": len(tally.streams),
            "first_at": tally.first_wall.isoformat(timespec="microseconds"),
            "last_at": (tally.first_wall + timedelta(seconds=seconds)).isoformat(
                timespec="microseconds"
            ),
            "seconds": round(seconds, 4),
            "timeline": [list(point) for point in tally.timeline],
            "client": tally.client,
            "server_name": self.name,
            "signed_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "public_key": self.key.public_key_b64,
        }
        return {**body, "signature": self.key.sign_hex(receipt_digest(body))}


RECEIPT_BOOK = web.AppKey("receipt_book", ReceiptBook)


def add_routes(app: web.Application, book: ReceiptBook) -> None:
    """The receipt of a test, and the server's public key at its well-known path."""
    app[RECEIPT_BOOK] = book

    async def well_known_key(request: web.Request) -> web.Response:
        return web.json_response(book.public_info())

    async def receipt(request: web.Request) -> web.Response:
        signed = book.receipt(
            request.remote or "", request.query.get("test", ""), request.query.get("direction", "")
        )
        if signed is None:
            raise web.HTTPNotFound(text="no such test seen by this server\n")
        return web.json_response(signed, headers={"Cache-Control": "no-store"})

    app.router.add_get(WELL_KNOWN_KEY_PATH, well_known_key)
    app.router.add_get(RECEIPT_PATH, receipt)


def tally_for(
    request: web.Request, test_id: str, direction: str
) -> Callable[[int, float], None] | None:
    """The native handlers' hook: a per-chunk tally when the server signs receipts."""
    book = request.app.get(RECEIPT_BOOK)
    if book is None:
        return None
    # A stream is a connection: the client's port tells them apart.
    peer = request.transport.get_extra_info("peername") if request.transport else None
    port = int(peer[1]) if isinstance(peer, tuple) and len(peer) > 1 else 0
    return book.tally(test_id, direction, request.remote or "", port)
