"""Cloudflare-style speed test (`__down?bytes=` / `__up`), client side.

Throughput goes through the engine (parallel streams of back-to-back requests). Latency
honours `Server-Timing`: the server's own time on the request (`dur`, milliseconds) is taken
out of the measured round trip, as Cloudflare's own client does, so a slow server is not
mistaken for a slow line.

    backend = CloudflareBackend("https://speed.cloudflare.com")
"""

from __future__ import annotations

import re

from netprobe.errors import ProtocolError
from netprobe.events import Sink
from netprobe.measure.engine import EngineOptions, measure_direction
from netprobe.measure.http import Endpoint, exchange
from netprobe.measure.requestloop import RequestLoop, refused
from netprobe.results import Direction, DirectionResult, Server

# Bytes per request: large enough that request gaps do not matter, small enough for the
# public server's per-request limits (an assumption; Cloudflare does not document one).
DOWNLOAD_REQUEST_BYTES = 25_000_000
UPLOAD_REQUEST_BYTES = 25_000_000
_DUR = re.compile(r"(?:^|[;,\s])dur=([0-9.]+)")


def server_seconds(headers: dict[str, str]) -> float | None:
    """The server's processing time from a Server-Timing header (its first `dur`), in seconds."""
    match = _DUR.search(headers.get("server-timing", ""))
    return float(match[1]) / 1000 if match else None


class CloudflareBackend:
    """Measures against speed.cloudflare.com or any server with `__down` and `__up`."""

    protocol = "cloudflare"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        Endpoint.parse(url)  # a ValueError for anything but an http(s) URL
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    async def connect(self) -> Server:
        """A zero-byte `__down` must answer 200 with an empty body: that tells the protocol apart."""
        status, _, body, _ = await self._timed_down()
        if status != 200 or body:
            what = f"HTTP {status}" if status != 200 else f"{len(body)} bytes for bytes=0"
            raise ProtocolError(
                f"{self.url} is not a Cloudflare-style server (__down answered {what})",
                reason="not_cloudflare",
            )
        return Server(url=self.url, name=self.url, protocol=self.protocol)

    async def _timed_down(self) -> tuple[int, dict[str, str], bytes, float]:
        return await exchange(
            self.url, "/__down?bytes=0", timeout_seconds=self.timeout_seconds, warm=True
        )

    async def ping(self) -> float:
        """A request round trip on a warm connection, minus the server's Server-Timing."""
        status, headers, body, elapsed = await self._timed_down()
        if status != 200:
            raise refused("the latency request", status, body)
        spent = server_seconds(headers) or 0.0
        return max(elapsed - spent, 0.0)

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        transfer = RequestLoop(
            base_url=self.url,
            direction=direction,
            protocol=self.protocol,
            download_path=f"/__down?bytes={DOWNLOAD_REQUEST_BYTES}",
            upload_path="/__up",
            upload_request_bytes=UPLOAD_REQUEST_BYTES,
            timeout_seconds=self.timeout_seconds,
        )
        return await measure_direction(transfer, options, sink)
