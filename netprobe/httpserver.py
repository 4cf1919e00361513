"""A small HTTP/1.1 server on asyncio streams, for the agent's exporter.

The exporter answers four routes to one scraper; importing aiohttp for that cost the idle agent
about 12 MiB of its resident memory (a quarter of it).

    async def app(request: Request) -> Response:
        return Response(200, "Healthy\\n")

    limits = HttpLimits(header_seconds=10, idle_seconds=75, connections=128, ...)
    server = await HttpServer.start(app, "127.0.0.1", 9469, limits)
    print(server.port)
    await server.close()

It keeps connections alive (HTTP/1.1's default; `Connection: close` and HTTP/1.0 close after
the answer), reads small request bodies by Content-Length and answers HEAD without a body.
What it refuses, with one status and a closed connection: a malformed request (400), a
request line or head over the size limit (414, 431), a body over it (413), a body without a
Content-Length (411), an HTTP version other than 1.x (505). A connection beyond the limits (in
all, and from one address), or whose request does not arrive in time, is closed without an
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import re
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from netprobe.errors import cannot_listen

log = logging.getLogger(__name__)

# How long a refused client's remaining bytes are read before its connection closes.
LINGER_SECONDS = 1.0
# RFC 9110's token: what a method or a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Request:
    """One parsed request; header names are lower-case, a repeated header's values joined
    by ", " (as RFC 9110 allows for list-valued headers such as Accept)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    version: str = "HTTP/1.1"


@dataclass
class Response:
    """An answer; `body` text is sent as UTF-8."""

    status: int
    body: str | bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class HttpLimits:
    """What one client may cost the server.

    A new connection's request line must arrive within `header_seconds`, a kept-alive one's
    within `idle_seconds`; the rest of the head within `header_seconds` after its first line.
    An answer the client does not read within `idle_seconds` closes the connection.
    """

    header_seconds: float
    idle_seconds: float
    connections: int
    # So that one client's flood leaves room for the scraper's new connection.
    connections_per_address: int
    head_bytes: int = 16 * 1024
    header_count: int = 100
    body_bytes: int = 64 * 1024


class _Refused(Exception):
    """A request the server answers with `status` and then closes the connection."""

    def __init__(self, status: int) -> None:
        self.status = status


class HttpServer:
    """Serves `app` on one listening socket until `close()`."""

    def __init__(self, app: App, limits: HttpLimits) -> None:
        self.app = app
        self.limits = limits
        self._open: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._per_address: Counter[str] = Counter()
        self._server: asyncio.Server | None = None

    @classmethod
    async def start(
        cls,
        app: App,
        host: str,
        port: int,
        limits: HttpLimits,
        tls: ssl.SSLContext | None = None,
    ) -> HttpServer:
        """Listen on the running loop; `ConfigError` when the address cannot be bound."""
        server = cls(app, limits)
        try:
            server._server = await asyncio.start_server(
                server._connection,
                host,
                port,
                ssl=tls,
                # A TLS client that never finishes its handshake is a client that never sends.
                ssl_handshake_timeout=limits.header_seconds if tls else None,
                limit=limits.head_bytes,
                reuse_address=True,
            )
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None
        return server

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        assert self._server is not None
        self._server.close()
        # Closed rather than cancelled: each connection then ends as if its client had left.
        tasks = list(self._open.values())
        for writer in self._open:
            writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        address = str(writer.get_extra_info("peername")[0])
        limits = self.limits
        if (
            len(self._open) >= limits.connections
            or self._per_address[address] >= limits.connections_per_address
        ):
            writer.close()  # unanswered: the cheapest refusal, and a flood learns nothing
            return
        self._open[writer] = task
        self._per_address[address] += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away or took too long: nothing to answer
        finally:
            del self._open[writer]
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        wait_seconds = self.limits.header_seconds
        while True:
            try:
                request = await self._read_request(reader, wait_seconds)
            except _Refused as refused:
                await self._refuse(reader, writer, refused.status)
                return
            if request is None:
                return
            response = await self._answer(request)
            keep_alive = _keeps_alive(request)
            await self._write(writer, request.method, response, keep_alive)
            if not keep_alive:
                return
            wait_seconds = self.limits.idle_seconds

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        await self._write(writer, "GET", Response(status, f"{status_line(status)}\n"), False)
        # Closing with bytes of the client's still unread would reset the connection, and the
        # client could lose the answer: read what it sends for a moment first.
        if writer.can_write_eof():
            writer.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_SECONDS):
                    while await reader.read(self.limits.head_bytes):
                        pass

    async def _answer(self, request: Request) -> Response:
        try:
            return await self.app(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return Response(500, "Internal Server Error\n")

    async def _read_request(
        self, reader: asyncio.StreamReader, wait_seconds: float
    ) -> Request | None:
        """The next request, or None when the client closed the connection between requests."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(wait_seconds) as deadline:
            try:
                first = await reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                return None
            except asyncio.LimitOverrunError:
                raise _Refused(414) from None
            deadline.reschedule(loop.time() + limits.header_seconds)
            method, target, version = _request_line(first)
            headers: dict[str, str] = {}
            head_bytes, count = len(first), 0
            while True:
                try:
                    line = await reader.readuntil(b"\r\n")
                except asyncio.LimitOverrunError:
                    raise _Refused(431) from None
                head_bytes += len(line)
                if line == b"\r\n":
                    break
                count += 1
                if head_bytes > limits.head_bytes or count > limits.header_count:
                    raise _Refused(431)
                name, value = _header_line(line)
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            body = await self._read_body(reader, headers)
        path, _, query = target.partition("?")
        query_values = parse_qs(query, keep_blank_values=True)
        return Request(method, unquote(path), query_values, headers, body, version)

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise _Refused(411)
        length = headers.get("content-length", "0")
        if not (length.isascii() and length.isdigit()):
            raise _Refused(400)
        if int(length) > self.limits.body_bytes:
            raise _Refused(413)
        return await reader.readexactly(int(length)) if int(length) else b""

    async def _write(
        self, writer: asyncio.StreamWriter, method: str, response: Response, keep_alive: bool
    ) -> None:
        body = response.body.encode() if isinstance(response.body, str) else response.body
        head = [
            f"HTTP/1.1 {status_line(response.status)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(body)}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if not keep_alive:
            head.append("Connection: close")
        writer.write("\r\n".join([*head, "", ""]).encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        async with asyncio.timeout(self.limits.idle_seconds):
            await writer.drain()


def status_line(status: int) -> str:
    """'404 Not Found'."""
    return f"{status} {http.HTTPStatus(status).phrase}"


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line[:-2].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise _Refused(400)
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not target.startswith("/"):
        raise _Refused(400)
    if not re.fullmatch(r"HTTP/\d\.\d", version):
        raise _Refused(400)
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Refused(505)
    return method, target, version


def _header_line(line: bytes) -> tuple[str, str]:
    name, colon, value = line[:-2].decode("latin-1").partition(":")
    # No colon, a space before it, or a folded continuation line: RFC 9112 says reject.
    if not colon or not _TOKEN.fullmatch(name):
        raise _Refused(400)
    return name.lower(), value.strip(" \t")


def _keeps_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    return request.version == "HTTP/1.1" and "close" not in tokens
