"""The one shape every cloud-drive access path has, and the meter each connection fills in.

An adapter only moves bytes and says where the time went; `run.py` decides how long, how many
connections, and what the numbers mean (blackbox_exporter's prober model: adding an access path
is one module, one line in `run._adapters()` and its name in `config.DriveKind`; see
docs/architecture.md):

    adapter = _adapters()[drive.kind](drive, redactor)      # in run.py
    tier = await adapter.open()                   # authenticate, check the account's tier
    await adapter.download(meter)                 # the file once, counted into meter
    await adapter.upload("/dir/x.bin", payload, meter)
    await adapter.delete("/dir/x.bin")
    await adapter.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from netprobe.drives.config import DriveConfig
from netprobe.errors import BudgetReached

# Adapters count bytes in chunks of at most this size, so a budget overshoots by less.
CHUNK_BYTES = 1 << 16


class Allowance:
    """Bytes a phase may still move, shared by its connections; checked on every chunk."""

    def __init__(self, bytes_left: int) -> None:
        self.bytes_left = bytes_left

    def take(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left <= 0:
            raise BudgetReached("the phase's data allowance is used up")


class Meter:
    """Times and payload bytes of one connection.

    `link_seconds` is the time spent finding the bytes (API calls, sign-in, redirects) before
    the request that returned them; `ttfb_seconds` the time from that request to its first byte.
    Only the first transfer on a connection sets them. An `allowance` shared by the connections
    of a phase ends them at the data budget. An upload sets `unsent` to a function
    returning bytes written but still in the socket's send queue, so the count is what left.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, allowance: Allowance | None = None
    ) -> None:
        self.clock = clock
        self.allowance = allowance
        self.started = clock()
        self.request_at: float | None = None
        self.first_byte_at: float | None = None
        self.last_byte_at: float | None = None
        self.bytes = 0
        self.unsent: Callable[[], int] | None = None

    def request(self) -> None:
        """A request for data (or a redirect hop towards it) is being sent."""
        if self.first_byte_at is None:
            self.request_at = self.clock()

    def add(self, n: int) -> None:
        """Count n payload bytes; raises BudgetReached once the phase's allowance is spent."""
        now = self.clock()
        if self.first_byte_at is None:
            self.first_byte_at = now
        self.last_byte_at = now
        self.bytes += n
        if self.allowance is not None:
            self.allowance.take(n)

    def read(self) -> int:
        """Payload bytes that left (upload) or arrived (download) so far."""
        unsent = self.unsent() if self.unsent is not None else 0
        return max(0, self.bytes - unsent)

    @property
    def link_seconds(self) -> float | None:
        return None if self.request_at is None else self.request_at - self.started

    @property
    def ttfb_seconds(self) -> float | None:
        if self.request_at is None or self.first_byte_at is None:
            return None
        return self.first_byte_at - self.request_at


class Redactor:
    """Knows every secret a probe has touched and blanks them out of any text shown to a user."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str) -> str:
        if len(secret) >= 4:
            self._secrets.add(secret)
        return secret

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def safe_url(url: str) -> str:
    """A URL fit for a message: scheme, host and path, never the query (signatures, tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class DriveAdapter(Protocol):
    """What every access path offers the probe."""

    async def open(self) -> str:
        """Sign in; return the account's tier ("free", "paid") or "unknown"."""
        ...

    async def download(self, meter: Meter) -> None:
        """Download the configured file once, counting into `meter`."""
        ...

    async def upload(self, path: str, payload: bytes, meter: Meter) -> None:
        """Store `payload` at `path`, counting into `meter`; returns when the drive confirmed it."""
        ...

    async def delete(self, path: str) -> None: ...

    async def close(self) -> None: ...


AdapterFactory = Callable[[DriveConfig, Redactor], DriveAdapter]
