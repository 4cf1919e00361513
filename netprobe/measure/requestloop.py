"""A direction as back-to-back HTTP requests on one keep-alive connection per stream.

The shape of every "fetch a big blob, post a big blob" speed test (netprobe's own protocol,
LibreSpeed's garbage/empty, Cloudflare's __down/__up): the engine runs `stream()` once per
parallel stream; a download is counted as the kernel receives it, an upload as the server's TCP
acknowledges it (TCP_INFO), never as what sits in our own socket buffer.

    transfer = RequestLoop(base_url, "download", "librespeed",
                           download_path="/garbage.php?ckSize=100", upload_path="/empty.php")
    await measure_direction(transfer, options, sink)
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from netprobe.errors import ServerRefused
from netprobe.measure.engine import ByteCounter
from netprobe.measure.http import Connection
from netprobe.results import Direction, StreamSeries

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


async def download_loop(
    conn: Connection, path: str, counter: ByteCounter, stop: asyncio.Event
) -> None:
    """GET `path` again and again until `stop`; a stopped request dies with the connection."""
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
        # Stopped or cancelled mid-body: the request must not outlive us with its error.
        stopped.cancel()
        if request is not None and not request.done():
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)


async def upload_loop(
    conn: Connection,
    path: str,
    counter: ByteCounter,
    stop: asyncio.Event,
    request_bytes: int,
    on_reply: Callable[[bytes], None] | None = None,
) -> None:
    """POST chunked bodies of at most `request_bytes` to `path` until `stop`.

    Each reply body goes to `on_reply` (a server that reports what it received).
    """
    payload = upload_payload()
    counter.source = conn.acknowledged_payload
    cap = request_bytes - len(payload)
    while not stop.is_set():
        start = counter.bytes
        status, _, body = await conn.upload(
            path,
            payload,
            lambda: not stop.is_set() and counter.bytes - start < cap,  # noqa: B023
            counter.add,
        )
        if status != 200:
            raise refused("the upload", status, body)
        if on_reply is not None:
            on_reply(body)


@dataclass
class RequestLoop:
    """Moves bytes with repeated GETs of `download_path` or POSTs to `upload_path`.

    Each POST body is at most `upload_request_bytes` (servers cap request bodies).
    """

    base_url: str
    direction: Direction
    protocol: str
    download_path: str
    upload_path: str
    upload_request_bytes: int = 20 << 20
    timeout_seconds: float = 5.0

    async def stream(
        self, index: int, counter: ByteCounter, stop: asyncio.Event
    ) -> StreamSeries | None:
        conn = await Connection.open(self.base_url, timeout_seconds=self.timeout_seconds)
        try:
            if self.direction == "download":
                await self._download(conn, counter, stop)
            else:
                await self._upload(conn, counter, stop)
            return None
        finally:
            conn.abort()

    async def _download(self, conn: Connection, counter: ByteCounter, stop: asyncio.Event) -> None:
        await download_loop(conn, self.download_path, counter, stop)

    async def _upload(self, conn: Connection, counter: ByteCounter, stop: asyncio.Event) -> None:
        await upload_loop(conn, self.upload_path, counter, stop, self.upload_request_bytes)
