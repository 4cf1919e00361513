"""Who may hold a connection, and for how long: the server's door.

Each accepted connection takes a share of the connection caps (in total, per address, per
prefix) before aiohttp sees a byte; one over its share gets a 503 and is closed. A
connection must deliver a request's headers within the header timeout and may idle between
requests no longer than that either. Errors (out of descriptors when accepting, malformed
requests) come out as one line per interval with a count, never a flood.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from netprobe.serve.state import RETRY_AFTER_SECONDS, ServerState, Transfer

log = logging.getLogger("netprobe.serve")
ERROR_SUMMARY_SECONDS = 10.0
CONNECTION = web.AppKey("connection_of", dict[asyncio.BaseTransport, "Connection"])
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
)


def descriptor_limit() -> int:
    """The process's soft limit on open descriptors (RLIMIT_NOFILE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Connection(asyncio.Protocol):
    """Stands in front of aiohttp's protocol for one connection: shares and deadlines."""

    def __init__(self, handler: asyncio.Protocol, state: ServerState, open_now: Registry) -> None:
        self.handler = handler
        self.state = state
        self.open_now = open_now
        self.client = ""
        self.admitted = False
        self.transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) else ""
        refusal = self.state.connections.take(self.client)
        if refusal is not None:
            self.state.refuse(Transfer(self.client, "-", "-"), refusal)
            text = f"server busy: {refusal.replace('_', ' ')} in use, retry later\n".encode()
            transport.write(_BUSY % (RETRY_AFTER_SECONDS, len(text), text))
            transport.close()
            return
        self.admitted = True
        self.open_now[transport] = self
        self.handler.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        """Start the clock for the next request's headers (or the idle time before it)."""
        self.disarm()
        seconds = self.state.limits.header_timeout_seconds
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._expired)

    def disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self.state.refusals["header_timeout"] += 1
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self.disarm()
        self.admitted = False
        if self.transport is not None:
            self.open_now.pop(self.transport, None)
        self.state.connections.give_back(self.client)
        self.handler.connection_lost(exc)


Registry = dict[asyncio.BaseTransport, Connection]


@web.middleware
async def request_clock(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The header clock stops while a request is handled and restarts once it is answered."""
    connection = request.app[CONNECTION].get(request.transport) if request.transport else None
    if connection is not None:
        connection.disarm()
    try:
        return await handler(request)
    finally:
        if connection is not None and connection.admitted:
            connection.arm()


class GuardedSite(web.TCPSite):
    """A TCP site whose every connection passes through a `Connection` first."""

    def __init__(self, runner: web.AppRunner, state: ServerState, host: str, port: int) -> None:
        super().__init__(runner, host, port, reuse_address=True, backlog=128)
        self.state = state

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        app = self._runner.app  # type: ignore[attr-defined]
        assert server is not None
        open_now = app[CONNECTION]
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Connection(server(), self.state, open_now),
            self._host,
            self._port,
            reuse_address=True,
            backlog=self._backlog,
        )


def loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's exception handler: errors go to the server's (summarized) log."""
    log.error("%s", context.get("message", "event loop error"), exc_info=context.get("exception"))


class Summarized(logging.Filter):
    """Lets through one record of each kind per interval, and says how many it held back.

    A kind is the message's template and the exception's name ("socket.accept() out of
    system resource (EMFILE)", "Error handling request from %s (BadHttpMessage)"). Errors a
    client causes (bad HTTP) and running out of descriptors lose their traceback: they are
    the client's doing or a limit to raise, not a bug. Without this, asyncio retrying accept
    every second and aiohttp logging every malformed request turn a flood into a log flood.
    """

    def __init__(self, interval_seconds: float = ERROR_SUMMARY_SECONDS) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self._since: dict[str, float] = {}
        self._held_back: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        key = f"{record.msg} ({_error_name(exc)})" if exc else str(record.msg)
        now = time.monotonic()
        since = self._since.get(key)
        if since is not None and now - since < self.interval_seconds:
            self._held_back[key] += 1
            return False
        self._since[key] = now
        message = record.getMessage()
        if isinstance(exc, HttpProcessingError | OSError):
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = f"{message}: {_error_name(exc)} {first_line}".rstrip()
            record.exc_info, record.exc_text = None, None
        if held_back := self._held_back.pop(key, 0):
            message += f" ({held_back} more like this in the last {now - since:.0f} s)"  # type: ignore[operator]
        record.msg, record.args = message, None
        return True


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, type(exc).__name__)
    return type(exc).__name__
