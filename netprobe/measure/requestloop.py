"""A direction as back-to-back HTTP requests on one keep-alive connection per stream.

The shape of every "fetch a big blob, post a big blob" speed test (netprobe's own protocol,
LibreSpeed's garbage/empty, Cloudflare's __down/__up): the engine runs `stream()` once per
parallel stream; a download is counted as the kernel receives it, an upload as the server's TCP
acknowledges it (TCP_INFO), never as what sits in our own socket buffer. Both end the moment the
engine stops them.

    transfer = RequestLoop(base_url, "download", "librespeed",
                           download_path="/garbage.php?ckSize=100", upload_path="/empty.php")
    await measure_direction(transfer, options, sink)
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from netprobe.errors import ServerRefused
from netprobe.measure.engine import ByteCounter
from netprobe.measure.http import Connection, Payload
from netprobe.results import Direction, StreamSeries

_UPLOAD_CHUNK_BYTES = 256 * 1024
# The chunk repeats a random block: 64 KiB from the system's generator cost a quarter of what
# 256 KiB did (0.2 ms against 0.8 ms, paid by each CLI test). Nothing on the path compresses.
_UPLOAD_RANDOM_BYTES = 64 * 1024
# The payload file repeats the chunk: each sendfile(2) of it is one wake-up of a sending thread
# (about 120 a second at 1 Gbit/s); it is 1 MiB of memory, not mapped.
_UPLOAD_FILE_REPEATS = 4


@functools.cache
def upload_payload() -> Payload:
    """One shared incompressible upload payload, made once per process."""
    chunk = os.urandom(_UPLOAD_RANDOM_BYTES) * (_UPLOAD_CHUNK_BYTES // _UPLOAD_RANDOM_BYTES)
    if not hasattr(os, "memfd_create"):
        return Payload(memoryview(chunk), None, 0)
    fd = os.memfd_create("netprobe-upload")
    with open(fd, "wb", closefd=False) as payload_file:
        payload_file.write(chunk * _UPLOAD_FILE_REPEATS)
    return Payload(memoryview(chunk), fd, _UPLOAD_FILE_REPEATS * len(chunk))


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
    counter.rtts = conn.receiving_rtts
    try:
        await _until_stopped(lambda: conn.download(path, counter.add), "the download", stop)
    finally:
        counter.moved_bytes = conn.received_payload()  # what arrived after the last sample too


async def upload_loop(
    conn: Connection, path: str, counter: ByteCounter, stop: asyncio.Event, request_bytes: int
) -> None:
    """POST bodies of `request_bytes` to `path` until `stop`.

    A stopped upload ends at once: what still sits in our socket buffer is never sent (on a
    slow uplink that is seconds of data the budget would pay for and the figure never uses).
    """
    payload = upload_payload()
    counter.source = conn.acknowledged_payload
    counter.rtts = conn.sending_rtts

    def post() -> Awaitable[tuple[int, dict[str, str], bytes]]:
        return conn.upload(path, payload, request_bytes, counter.add)

    try:
        await _until_stopped(post, "the upload", stop)
    finally:
        counter.moved_bytes = conn.sent_payload()  # sent, not yet acknowledged: it still goes out


async def _until_stopped(
    request: Callable[[], Awaitable[tuple[int, dict[str, str], bytes]]],
    what: str,
    stop: asyncio.Event,
) -> None:
    """Make requests back to back until `stop`; the caller drops the connection afterwards."""
    stopped = asyncio.ensure_future(stop.wait())
    pending: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
    try:
        while not stop.is_set():
            pending = asyncio.ensure_future(request())
            await asyncio.wait({pending, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not pending.done():
                return
            status, _, body = pending.result()
            if status != 200:
                raise refused(what, status, body)
    finally:
        # Stopped or cancelled mid-body: the request must not outlive us with its error.
        stopped.cancel()
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


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
