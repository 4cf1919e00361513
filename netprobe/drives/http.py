"""Direct HTTP(S) downloads and share links with Range, and the HTTP fetching every drive shares.

Why aiohttp and not `netprobe.measure.http`: drives answer with redirects to CDNs, chunked
bodies, TLS with SNI and cookies, at free-tier rates where per-chunk cost does not matter; the
measurement client is built for none of that. Redirects are followed by hand so that the time
spent resolving the link is kept apart from the time to first byte, a loop is caught, the
configured headers (e.g. `User-Agent: pan.baidu.com`) go along to the CDN, and credentials
(`Authorization`) never leave the drive's own origin.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import struct
import termios
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from netprobe.drives.adapter import CHUNK_BYTES, Meter, Redactor, safe_url
from netprobe.drives.config import DriveConfig
from netprobe.errors import MeasurementError, ProtocolError, ServerRefused, TransportError

MAX_REDIRECTS = 10
_ERROR_BODY_BYTES = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)

# Drive error codes found in JSON bodies -> (reason, what it means). Drives answer errors with
# HTTP 200 or 403 and a JSON code, so the status alone says little.
ErrorCodes = Mapping[int, tuple[str, str]]
COMMON_ERROR_CODES: ErrorCodes = {
    5113: ("quota", "the daily download quota is used up (123pan code 5113)"),
}
_STATUS_REASONS = {
    401: ("auth", "the drive refused the credentials (HTTP 401): expired or wrong"),
    403: ("forbidden", "the drive refused the request (HTTP 403)"),
    404: ("not_found", "the file is not on the drive (HTTP 404)"),
    416: ("range", "the drive refused the byte range (HTTP 416)"),
    429: ("rate_limited", "the drive is rate limiting this client (HTTP 429)"),
}


class SocketRecorder:
    """A socket factory for aiohttp that remembers its sockets, to read their send queues."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []

    def __call__(self, addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family, kind, proto)
        self._sockets = [s for s in self._sockets if s.fileno() != -1]
        self._sockets.append(sock)
        return sock

    def unsent_bytes(self) -> int:
        """Bytes written into the open sockets that the peers have not acknowledged yet."""
        total = 0
        for sock in self._sockets:
            with contextlib.suppress(OSError, ValueError):
                if sock.fileno() != -1:
                    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                    total += struct.unpack("i", raw)[0]
        return total


def open_session(drive: DriveConfig, recorder: SocketRecorder) -> aiohttp.ClientSession:
    """A session for one drive: its timeouts, its headers, sockets recorded for uploads."""
    timeout = aiohttp.ClientTimeout(
        sock_connect=drive.connect_timeout_seconds,
        sock_read=max(30.0, drive.connect_timeout_seconds),
    )
    connector = aiohttp.TCPConnector(limit=0, socket_factory=recorder)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": "netprobe", **drive.headers},
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    meter: Meter,
    *,
    credentials: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    codes: ErrorCodes = COMMON_ERROR_CODES,
) -> None:
    """GET `url` (Range from byte 0), following redirects by hand, counting the body into meter.

    `credentials` are headers sent only to the origin of `url`; `headers` go to every hop.
    """
    seen: set[str] = set()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if current in seen:
            raise ProtocolError(
                f"redirect loop: {safe_url(current)} redirects back to itself",
                reason="redirect_loop",
            )
        seen.add(current)
        send = {"Range": "bytes=0-", **(headers or {})}
        if credentials and _same_origin(current, url):
            send.update(credentials)
        meter.request()
        async with request(session, "GET", current, headers=send) as response:
            if response.status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise ProtocolError(
                        f"{safe_url(current)} redirected without a Location", reason="protocol"
                    )
                current = str(response.url.join(URL(location, encoded=True)))
                continue
            await check_data_response(response, current, codes)
            try:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    meter.add(len(chunk))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise transport_error(exc, current) from None
            return
    raise ProtocolError(
        f"more than {MAX_REDIRECTS} redirects from {safe_url(url)}", reason="redirect_loop"
    )


@contextlib.asynccontextmanager
async def request(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """session.request without redirects, with aiohttp's errors (which quote URLs) made safe."""
    try:
        async with session.request(
            method, URL(url, encoded=True), allow_redirects=False, **kwargs
        ) as response:
            yield response
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(exc, url) from None


def transport_error(exc: BaseException, url: str) -> TransportError:
    where = safe_url(url)
    if isinstance(exc, TimeoutError):
        return TransportError(f"{where}: no data within the timeout", reason="timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect to {where}: {exc.os_error}", reason="unreachable")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return TransportError(f"{where}: the drive closed the connection", reason="reset")
    return TransportError(f"{where}: {type(exc).__name__}", reason="transport")


async def error_from_body(
    response: aiohttp.ClientResponse, codes: ErrorCodes
) -> MeasurementError | None:
    """The drive's JSON error code in the body, mapped to a reason, if there is one."""
    body = b""
    try:
        while len(body) < _ERROR_BODY_BYTES:
            chunk = await response.content.read(_ERROR_BODY_BYTES - len(body))
            if not chunk:
                break
            body += chunk
        document = json.loads(body)
    except (ValueError, aiohttp.ClientError, TimeoutError):
        return None
    if not isinstance(document, dict):
        return None
    for key in ("errno", "error_code", "code"):
        code = document.get(key)
        if isinstance(code, int) and code in codes:
            reason, meaning = codes[code]
            return ServerRefused(f"{meaning} [{key} {code}]", reason=reason)
    return None


async def check_data_response(
    response: aiohttp.ClientResponse, url: str, codes: ErrorCodes = COMMON_ERROR_CODES
) -> None:
    """Raise with a reason unless the response carries the file's bytes."""
    content_type = response.headers.get("Content-Type", "").lower()
    where = safe_url(url)
    if response.status >= 400:
        known = await error_from_body(response, codes)
        if known is not None:
            raise known
        reason, meaning = _STATUS_REASONS.get(
            response.status,
            ("http_5xx" if response.status >= 500 else "http_4xx", f"HTTP {response.status}"),
        )
        raise ServerRefused(f"{where}: {meaning}", reason=reason)
    if response.status not in (200, 206):
        raise ProtocolError(f"{where}: unexpected HTTP {response.status}", reason="protocol")
    if "text/html" in content_type:
        raise ProtocolError(
            f"{where} answered an HTML page instead of the file (a login or error page?)",
            reason="html",
        )
    if "json" in content_type:
        known = await error_from_body(response, codes)
        raise known or ProtocolError(
            f"{where} answered JSON instead of the file", reason="unexpected_json"
        )


async def counted_body(payload: bytes, meter: Meter) -> AsyncIterator[bytes]:
    """The payload in chunks, each counted as it is handed to the connection."""
    view = memoryview(payload)
    for offset in range(0, len(payload), CHUNK_BYTES):
        chunk = view[offset : offset + CHUNK_BYTES]
        meter.add(len(chunk))
        yield bytes(chunk)


class HttpDrive:
    """A file behind a direct HTTP(S) URL or a share link; download only."""

    def __init__(self, drive: DriveConfig, redactor: Redactor) -> None:
        self.drive = drive
        self.recorder = SocketRecorder()
        self.credentials: dict[str, str] = {}
        token = drive.credentials.token
        if token is not None:
            self.credentials["Authorization"] = "Bearer " + redactor.add(token.reveal())
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> str:
        self.session = open_session(self.drive, self.recorder)
        return "unknown"

    async def download(self, meter: Meter) -> None:
        assert self.session is not None
        await fetch(self.session, self.drive.url, meter, credentials=self.credentials)

    async def upload(self, path: str, payload: bytes, meter: Meter) -> None:
        raise ProtocolError("http drives are download only", reason="unsupported")

    async def delete(self, path: str) -> None:
        return None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
