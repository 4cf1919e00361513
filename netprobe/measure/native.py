"""The native netprobe protocol, client side (the server side is netprobe/serve/native.py)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time

from netprobe.errors import ProtocolError, ServerRefused
from netprobe.events import Sink
from netprobe.measure.engine import ByteCounter, EngineOptions, measure_direction
from netprobe.measure.http import Connection
from netprobe.results import Direction, DirectionResult, Server, StreamSeries, new_id

PREFIX = "/netprobe/v1"
_UPLOAD_CHUNK_BYTES = 256 * 1024


@functools.cache
def upload_payload() -> memoryview:
    """One shared incompressible upload chunk, made once per process."""
    return memoryview(os.urandom(_UPLOAD_CHUNK_BYTES))


def refused(what: str, status: int, body: bytes) -> ServerRefused:
    """A refusal that says what the server answered, in one line."""
    text = body.decode("utf-8", "replace").strip().splitlines()
    detail = f": {text[0][:120]}" if text else ""
    reason = "busy" if status == 503 else f"http_{status}"
    return ServerRefused(f"{what} answered HTTP {status}{detail}", reason=reason)


class NativeBackend:
    """Measures against `netprobe serve` (or any server speaking the native protocol)."""

    protocol = "native"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_request_bytes = 1_000_000_000

    async def connect(self) -> Server:
        """Say hello; fail clearly when the peer is not a netprobe server."""
        conn = await Connection.open(self.url, timeout_seconds=self.timeout_seconds)
        try:
            status, _, body = await asyncio.wait_for(
                conn.request("GET", f"{PREFIX}/hello"), self.timeout_seconds
            )
        except TimeoutError:
            raise ProtocolError(
                f"{self.url} accepted the connection but did not answer within "
                f"{self.timeout_seconds:g} s",
                reason="stalled",
            ) from None
        finally:
            conn.abort()
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
        """Seconds for one request/response on a fresh connection's second exchange."""
        conn = await Connection.open(self.url, timeout_seconds=self.timeout_seconds)
        try:
            await asyncio.wait_for(conn.request("GET", f"{PREFIX}/ping"), self.timeout_seconds)
            start = time.perf_counter()
            await asyncio.wait_for(conn.request("GET", f"{PREFIX}/ping"), self.timeout_seconds)
            return time.perf_counter() - start
        finally:
            conn.abort()

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        transfer = _NativeTransfer(self, direction, new_id())
        return await measure_direction(transfer, options, sink)


class _NativeTransfer:
    def __init__(self, backend: NativeBackend, direction: Direction, test_id: str) -> None:
        self.backend = backend
        self.direction = direction
        self.protocol = backend.protocol
        self.test_id = test_id

    async def stream(
        self, index: int, counter: ByteCounter, stop: asyncio.Event
    ) -> StreamSeries | None:
        conn = await Connection.open(self.backend.url, timeout_seconds=self.backend.timeout_seconds)
        try:
            if self.direction == "download":
                await self._download(conn, counter, stop)
                return None
            return await self._upload(conn, index, counter, stop)
        finally:
            conn.abort()

    async def _download(self, conn: Connection, counter: ByteCounter, stop: asyncio.Event) -> None:
        path = f"{PREFIX}/download?bytes={self.backend.max_request_bytes}&test={self.test_id}"
        counter.source = conn.received_payload
        stopped = asyncio.ensure_future(stop.wait())
        request: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        try:
            while not stop.is_set():
                request = asyncio.ensure_future(conn.download(path, counter.add))
                await asyncio.wait({request, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not request.done():
                    return
                status, _, body = request.result()
                if status != 200:
                    raise refused("the download", status, body)
        finally:
            # Stopped or cancelled mid-body: the request dies with the connection, quietly.
            stopped.cancel()
            if request is not None and not request.done():
                request.cancel()
                await asyncio.gather(request, return_exceptions=True)

    async def _upload(
        self, conn: Connection, index: int, counter: ByteCounter, stop: asyncio.Event
    ) -> StreamSeries:
        """Upload in requests of at most the server's cap; join their receiver series."""
        path = f"{PREFIX}/upload?test={self.test_id}&stream={index}"
        payload = upload_payload()
        counter.source = conn.acknowledged_payload
        request_cap = self.backend.max_request_bytes - len(payload)
        joined = StreamSeries(stream=index)
        while not stop.is_set():
            start = counter.bytes
            status, _, body = await conn.upload(
                path,
                payload,
                lambda: not stop.is_set() and counter.bytes - start < request_cap,  # noqa: B023
                counter.add,
            )
            if status != 200:
                raise refused("the upload", status, body)
            try:
                report = json.loads(body)
                offset = joined.bytes[-1] if joined.bytes else 0
                joined.t_seconds += [float(t) for t in report["t_seconds"]]
                joined.bytes += [offset + int(b) for b in report["bytes"]]
            except (ValueError, KeyError, TypeError):
                raise ProtocolError(
                    "the server's upload report is not valid JSON", reason="protocol"
                ) from None
        return joined
