"""What every protocol of the server shares: limits, the payload, admission of transfers.

Every resource a client can hold (connections, tests, transfers) is counted three ways: in
total, per client address and per client prefix (/24 for IPv4, /56 for IPv6: about one
subscriber's or one site's allocation). A client over its share is refused with 503 and
Retry-After while everyone else carries on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from aiohttp import web

PAYLOAD_BYTES = 8 << 20
PROTOCOL_NAMES = web.AppKey("protocols", list[str])
RETRY_AFTER_SECONDS = 10
# Descriptors the process needs besides client connections: stdio, the event loop, the
# listening sockets, the metrics listener, the access log, a connection being refused.
RESERVED_DESCRIPTORS = 32


@dataclass(frozen=True)
class ServerLimits:
    """Caps that make the server safe to expose; every one is enforced per request.

    The per-address shares fit what honest clients open: speedtest-cli runs 8 download
    threads, LibreSpeed 6 streams, a browser about 6 connections per host; a household
    behind one NAT address may run two tests at once. A prefix gets twice an address.
    """

    max_bytes_per_request: int = 2_000_000_000
    max_request_seconds: float = 60.0
    max_tests: int = 8
    max_streams_per_test: int = 32
    max_transfers: int = 128
    max_connections: int = 512
    tests_per_address: int = 2
    tests_per_prefix: int = 4
    transfers_per_address: int = 16
    transfers_per_prefix: int = 32
    connections_per_address: int = 24
    connections_per_prefix: int = 48
    header_timeout_seconds: float = 10.0
    idle_body_timeout_seconds: float = 10.0
    download_rate_bytes_per_second: float | None = None
    upload_rate_bytes_per_second: float | None = None

    def fit_descriptors(self, descriptor_limit: int) -> ServerLimits:
        """These limits with the connection cap lowered to fit the process's descriptor limit."""
        fitting = max(1, descriptor_limit - RESERVED_DESCRIPTORS)
        return replace(self, max_connections=min(self.max_connections, fitting))


def client_prefix(address: str) -> str:
    """The prefix a client address is counted under: its /24 (IPv4) or /56 (IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a Unix socket or a test transport: its own prefix
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    length = 24 if ip.version == 4 else 56
    return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))


class Shares:
    """One resource in use (connections, tests or transfers): in total, per address, per prefix.

    shares = Shares("tests", total=8, per_address=2, per_prefix=4)
    refusal = shares.take("192.0.2.7")     # None, or why not: "tests_per_address"
    shares.give_back("192.0.2.7")
    """

    def __init__(self, name: str, total: int, per_address: int, per_prefix: int) -> None:
        self.name = name
        self.total = total
        self.per_address = per_address
        self.per_prefix = per_prefix
        self.in_use = 0
        self._by_address: Counter[str] = Counter()
        self._by_prefix: Counter[str] = Counter()

    def take(self, address: str) -> str | None:
        """Count one in for `address`, or say which share it would exceed."""
        prefix = client_prefix(address)
        if self._by_address[address] >= self.per_address:
            return f"{self.name}_per_address"
        if self._by_prefix[prefix] >= self.per_prefix:
            return f"{self.name}_per_prefix"
        if self.in_use >= self.total:
            return f"{self.name}_total"
        self._by_address[address] += 1
        self._by_prefix[prefix] += 1
        self.in_use += 1
        return None

    def give_back(self, address: str) -> None:
        prefix = client_prefix(address)
        for counts, key in ((self._by_address, address), (self._by_prefix, prefix)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        self.in_use -= 1


@dataclass
class Transfer:
    """One request that moves payload, as the access log and the metrics see it."""

    client: str
    protocol: str
    direction: str
    started: float = field(default_factory=time.monotonic)
    n_bytes: int = 0
    seconds: float = 0.0
    # ok, gone (the client vanished), timeout, idle, too_large, bad_request, error,
    # or refused:<share> (e.g. refused:tests_per_address)
    outcome: str = "ok"


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


class ServerState:
    """Shared by all routes: the payload, who holds what, and what happened (for metrics).

    `observers` are called with every transfer that ended or was refused: the access log
    is one, and anything else that wants a record of each test can be another.
    """

    def __init__(self, limits: ServerLimits | None = None) -> None:
        self.limits = limits = limits or ServerLimits()
        self.payload = os.urandom(PAYLOAD_BYTES)
        self.tests: dict[tuple[str, str], _Test] = {}
        self.connections = Shares(
            "connections",
            limits.max_connections,
            limits.connections_per_address,
            limits.connections_per_prefix,
        )
        self.test_shares = Shares(
            "tests", limits.max_tests, limits.tests_per_address, limits.tests_per_prefix
        )
        self.transfers = Shares(
            "transfers",
            limits.max_transfers,
            limits.transfers_per_address,
            limits.transfers_per_prefix,
        )
        self.download_pacer = Pacer(r) if (r := limits.download_rate_bytes_per_second) else None
        self.upload_pacer = Pacer(r) if (r := limits.upload_rate_bytes_per_second) else None
        self.observers: list[Callable[[Transfer], None]] = []
        # (protocol, direction, outcome) -> count; (protocol, direction) -> bytes; reason -> count
        self.transfers_ended: Counter[tuple[str, str, str]] = Counter()
        self.bytes_moved: Counter[tuple[str, str]] = Counter()
        self.refusals: Counter[str] = Counter()

    def origin(self, client: str, test_id: str) -> float:
        """Monotonic time the test's first stream reached the server: its receiver timeline."""
        return self.tests[(client, test_id)].origin

    def refuse(self, transfer: Transfer, reason: str) -> web.HTTPServiceUnavailable:
        """Record a refusal; returns the 503 to raise."""
        transfer.outcome = f"refused:{reason}"
        self.refusals[reason] += 1
        self._notify(transfer)
        return web.HTTPServiceUnavailable(
            text=f"server busy: {reason.replace('_', ' ')} in use, retry later\n",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @contextmanager
    def admit(
        self, request: web.Request, protocol: str, direction: str, test_id: str | None = None
    ) -> Iterator[Transfer]:
        """Count one transfer in, or refuse it with 503 when the client or the server is full."""
        client = request.remote or ""
        transfer = Transfer(client, protocol, direction)
        now = time.monotonic()
        self._expire(now)
        test = None
        if test_id is not None:
            key = (client, test_id)
            test = self.tests.get(key)
            if test is not None and test.active >= self.limits.max_streams_per_test:
                raise web.HTTPTooManyRequests(text="too many streams for one test\n")
            if (test is None or test.active == 0) and (refusal := self.test_shares.take(client)):
                raise self.refuse(transfer, refusal)
            if test is None:
                test = self.tests[key] = _Test(origin=now)
        if refusal := self.transfers.take(client):
            if test is not None:
                self._leave(client, test)
            raise self.refuse(transfer, refusal)
        if test is not None:
            test.active += 1
        try:
            yield transfer
        except web.HTTPException as exc:
            if transfer.outcome == "ok":
                transfer.outcome = _OUTCOMES.get(exc.status, "bad_request")
            raise
        except asyncio.CancelledError:
            transfer.outcome = "gone"
            raise
        except Exception:
            transfer.outcome = "error"
            raise
        finally:
            self.transfers.give_back(client)
            if test is not None:
                test.active -= 1
                self._leave(client, test)
            transfer.seconds = time.monotonic() - transfer.started
            self.bytes_moved[(protocol, direction)] += transfer.n_bytes
            self.transfers_ended[(protocol, direction, transfer.outcome)] += 1
            self._notify(transfer)

    def _leave(self, client: str, test: _Test) -> None:
        test.last_seen = time.monotonic()
        if test.active == 0:
            self.test_shares.give_back(client)

    def _notify(self, transfer: Transfer) -> None:
        for observer in self.observers:
            observer(transfer)

    def _expire(self, now: float) -> None:
        idle = [k for k, t in self.tests.items() if t.active == 0 and now - t.last_seen > 30]
        for key in idle:
            del self.tests[key]


_OUTCOMES = {408: "timeout", 413: "too_large"}


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
