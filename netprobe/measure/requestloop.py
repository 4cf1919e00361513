"""A direction as back-to-back HTTP requests on one keep-alive connection per stream.

The shape of every "fetch a big blob, post a big blob" speed test (LibreSpeed's garbage/empty,
Cloudflare's __down/__up): the engine runs `stream()` once per parallel stream; a download
counts body bytes as they arrive, an upload counts what the server's TCP acknowledged.

    transfer = RequestLoop(base_url, "download", "librespeed",
                           download_path="/garbage.php?ckSize=100", upload_path="/empty.php")
    await measure_direction(transfer, options, sink)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from netprobe.measure.engine import ByteCounter
from netprobe.measure.http import Connection
from netprobe.measure.native import refused, upload_payload
from netprobe.results import Direction, StreamSeries


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
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                request = asyncio.ensure_future(conn.download(self.download_path, counter.add))
                done, _ = await asyncio.wait(
                    {request, stopped}, return_when=asyncio.FIRST_COMPLETED
                )
                if request not in done:
                    request.cancel()
                    await asyncio.gather(request, return_exceptions=True)
                    return
                status, _, body = request.result()
                if status != 200:
                    raise refused("the download", status, body)
        finally:
            stopped.cancel()

    async def _upload(self, conn: Connection, counter: ByteCounter, stop: asyncio.Event) -> None:
        payload = upload_payload()

        def acknowledged() -> int | None:
            info = conn.tcp_info()
            return None if info is None else max(0, info[0] - conn.sent_overhead_bytes)

        counter.source = acknowledged
        cap = self.upload_request_bytes - len(payload)
        while not stop.is_set():
            start = counter.bytes
            status, _, body = await conn.upload(
                self.upload_path,
                payload,
                lambda: not stop.is_set() and counter.bytes - start < cap,  # noqa: B023
                counter.add,
            )
            if status != 200:
                raise refused("the upload", status, body)
