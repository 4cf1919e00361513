"""The native netprobe protocol, client side (the server side is netprobe/serve/native.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from netprobe.errors import MeasurementError, ProtocolError
from netprobe.events import Sink
from netprobe.measure.engine import ByteCounter, EngineOptions, measure_direction
from netprobe.measure.http import Connection, Endpoint, exchange
from netprobe.measure.requestloop import download_loop, refused, upload_loop
from netprobe.results import Direction, DirectionResult, Server, new_id

PREFIX = "/netprobe/v1"
RECEIPT_PATH = f"{PREFIX}/receipt"


class NativeBackend:
    """Measures against `netprobe serve` (or any server speaking the native protocol)."""

    protocol = "native"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        Endpoint.parse(url)  # a URL that is not http(s) is bad input, refused before any test
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_request_bytes = 1_000_000_000
        self._ping_conn: Connection | None = None

    async def connect(self) -> Server:
        """Say hello; fail clearly when the peer is not a netprobe server."""
        status, _, body, _ = await exchange(
            self.url, f"{PREFIX}/hello", timeout_seconds=self.timeout_seconds
        )
        if status != 200:
            raise ProtocolError(
                f"{self.url} is not a netprobe server ({PREFIX}/hello answered HTTP {status})",
                reason="not_netprobe",
            )
        try:
            hello = json.loads(body)
            assert hello["service"] == "netprobe"
        except (ValueError, KeyError, TypeError, AssertionError):
            raise ProtocolError(
                f"{self.url} is not a netprobe server (unexpected hello)", reason="not_netprobe"
            ) from None
        self.max_request_bytes = int(
            hello.get("limits", {}).get("max_bytes_per_request", self.max_request_bytes)
        )
        return Server(
            url=self.url,
            name=hello.get("name", ""),
            protocol=self.protocol,
            version=str(hello.get("version", "")),
        )

    async def ping(self) -> float:
        """Seconds for one request/response round trip on the kept-open latency connection.

        One connection serves every ping of a test, idle and loaded: a fresh one per ping cost a
        handshake, an untimed warm-up request and a teardown four times a second under load.
        """
        path = f"{PREFIX}/ping"
        conn = self._ping_conn
        try:
            async with asyncio.timeout(self.timeout_seconds):
                if conn is None or not conn.usable():
                    conn = self._ping_conn = await Connection.open(
                        self.url, timeout_seconds=self.timeout_seconds
                    )
                    await conn.request("GET", path)  # untimed: the server's first request
                start = time.perf_counter()
                status, _, body = await conn.request("GET", path)
                seconds = time.perf_counter() - start
        except TimeoutError:
            await self.close()
            raise ProtocolError(
                f"{self.url} did not answer a ping within {self.timeout_seconds:g} s",
                reason="stalled",
            ) from None
        except MeasurementError:
            await self.close()
            raise
        if status != 204:
            raise refused("the latency request", status, body)
        return seconds

    async def close(self) -> None:
        """Drop the latency connection (the next ping opens a new one)."""
        if self._ping_conn is not None:
            self._ping_conn.abort()
            self._ping_conn = None

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        transfer = _NativeTransfer(self, direction, new_id())
        result = await measure_direction(transfer, options, sink)
        if result.ok:
            result.receipt = await self.receipt(transfer.test_id, direction)
        return result

    async def receipt(self, test_id: str, direction: Direction) -> dict[str, Any] | None:
        """The server's signed receipt of the test, when it signs them (`serve --key`)."""
        try:
            status, _, body, _ = await exchange(
                self.url,
                f"{RECEIPT_PATH}?test={test_id}&direction={direction}",
                timeout_seconds=self.timeout_seconds,
            )
            receipt = json.loads(body) if status == 200 else None
        except (MeasurementError, ValueError, OSError):
            return None  # the figure stands on its own; it is just not confirmed
        return receipt if isinstance(receipt, dict) else None


class _NativeTransfer:
    def __init__(self, backend: NativeBackend, direction: Direction, test_id: str) -> None:
        self.backend = backend
        self.direction = direction
        self.protocol = backend.protocol
        self.test_id = test_id

    async def stream(self, index: int, counter: ByteCounter, stop: asyncio.Event) -> None:
        conn = await Connection.open(self.backend.url, timeout_seconds=self.backend.timeout_seconds)
        try:
            if self.direction == "download":
                path = (
                    f"{PREFIX}/download?bytes={self.backend.max_request_bytes}&test={self.test_id}"
                )
                await download_loop(conn, path, counter, stop)
            else:
                # Counted as the server's TCP acknowledges it; the server's own report would
                # arrive only after our socket buffer drained, which the test does not wait for.
                path = f"{PREFIX}/upload?test={self.test_id}&stream={index}"
                await upload_loop(conn, path, counter, stop, self.backend.max_request_bytes)
        finally:
            conn.abort()
