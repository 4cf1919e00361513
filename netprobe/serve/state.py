"""What every protocol of the server shares: limits, the payload, admission of transfers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

PAYLOAD_BYTES = 8 << 20
PROTOCOL_NAMES = web.AppKey("protocols", list[str])


@dataclass
class ServerLimits:
    """Caps that make the server safe to expose; every one is enforced per request."""

    max_bytes_per_request: int = 2_000_000_000
    max_request_seconds: float = 60.0
    max_tests: int = 8
    max_streams_per_test: int = 32
    max_transfers: int = 128
    download_rate_bytes_per_second: float | None = None
    upload_rate_bytes_per_second: float | None = None


class Pacer:
    """Holds every transfer of one direction, together, to a rate: the server acts as a line.

    Used by the offline demo and by operators who want a reference server that behaves like a
    given plan. Each chunk waits until the chunks before it would have crossed a line of that
    rate, so the pace is exact on average while the chunks stay small.
    """

    def __init__(self, bytes_per_second: float) -> None:
        self.bytes_per_second = bytes_per_second
        self._free_at = 0.0

    async def take(self, n_bytes: int) -> None:
        now = time.monotonic()
        self._free_at = max(self._free_at, now) + n_bytes / self.bytes_per_second
        if self._free_at - now > 0.001:
            await asyncio.sleep(self._free_at - now)


@dataclass
class _Test:
    origin: float
    active: int = 0
    last_seen: float = 0.0


@dataclass
class ServerState:
    """Shared by all routes: the incompressible payload and who is transferring now."""

    limits: ServerLimits = field(default_factory=ServerLimits)
    payload: bytes = field(default_factory=lambda: os.urandom(PAYLOAD_BYTES))
    tests: dict[str, _Test] = field(default_factory=dict)
    transfers: int = 0
    download_pacer: Pacer | None = None
    upload_pacer: Pacer | None = None

    def __post_init__(self) -> None:
        if self.limits.download_rate_bytes_per_second:
            self.download_pacer = Pacer(self.limits.download_rate_bytes_per_second)
        if self.limits.upload_rate_bytes_per_second:
            self.upload_pacer = Pacer(self.limits.upload_rate_bytes_per_second)

    def origin(self, test_id: str) -> float:
        """Monotonic time the test's first stream reached the server: its receiver timeline."""
        return self.tests[test_id].origin

    @contextmanager
    def admit(self, test_id: str | None) -> Iterator[None]:
        """Count one transfer in, or refuse it with 503 when the server is full."""
        now = time.monotonic()
        self._expire(now)
        if self.transfers >= self.limits.max_transfers:
            raise _busy("too many transfers in progress")
        test = None
        if test_id is not None:
            test = self.tests.get(test_id)
            if test is None:
                if sum(1 for t in self.tests.values() if t.active) >= self.limits.max_tests:
                    raise _busy("too many tests in progress")
                test = self.tests[test_id] = _Test(origin=now)
            if test.active >= self.limits.max_streams_per_test:
                raise web.HTTPTooManyRequests(text="too many streams for one test\n")
            test.active += 1
        self.transfers += 1
        try:
            yield
        finally:
            self.transfers -= 1
            if test is not None:
                test.active -= 1
                test.last_seen = time.monotonic()

    def _expire(self, now: float) -> None:
        idle = [k for k, t in self.tests.items() if t.active == 0 and now - t.last_seen > 30]
        for key in idle:
            del self.tests[key]


def _busy(why: str) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(text=f"server busy: {why}\n", headers={"Retry-After": "10"})


def int_param(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    low: int = 0,
    high: int | None = None,
) -> int:
    """An integer query parameter in [low, high], or 400 naming the parameter."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise web.HTTPBadRequest(text=f"missing parameter {name}\n")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"parameter {name} must be an integer\n") from None
    if value < low or (high is not None and value > high):
        raise web.HTTPBadRequest(text=f"parameter {name} must be in [{low}, {high}]\n")
    return value
