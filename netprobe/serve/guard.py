"""Who may hold a connection, and for how long: the server's door.

Each accepted connection takes a share of the connection caps (in total, per address, per
prefix) before aiohttp sees a byte; one over its share gets a 503 and is closed at once. A
connection must deliver a request's headers within the header timeout and may idle between
requests no longer than that either. Errors (out of descriptors when accepting, malformed
requests) come out as one line per interval with a count, never a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from netprobe.serve.state import RETRY_AFTER_SECONDS, ServerState, Transfer

log = logging.getLogger("netprobe.serve")
ERROR_SUMMARY_SECONDS = 10.0
# Connections accepted per wake-up of the listener, and the kernel's queue of them.
ACCEPT_BATCH = 64
LISTEN_BACKLOG = 1024
ACCEPT_RETRY_SECONDS = 1.0
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
)


def descriptor_limit() -> int:
    """The process's soft limit on open descriptors (RLIMIT_NOFILE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Connection(asyncio.Protocol):
    """Stands in front of aiohttp's protocol for one admitted connection: its header clock,
    and the end of a lingering close once the client is gone.

    After a response whose request body was not read (a refusal), aiohttp drains the body for
    up to its lingering time so that the client can read the answer before the close. It goes
    on draining after the client has closed, holding the request and its refusal for the whole
    time: a client that sends a body, takes its 503 and reconnects at once made the server hold
    thousands of them (95 MiB under the "trickle" attack). The unread body is ended here as the
    client's side ends.
    """

    def __init__(self, handler: asyncio.Protocol, state: ServerState, client: str) -> None:
        self.handler = handler
        self.state = state
        self.client = client
        self.open = False
        self.transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        # The body of the request answered last, which aiohttp may still be draining.
        self.answered_body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open = True
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
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.end_answered_body()
        return self.handler.eof_received()

    def end_answered_body(self) -> None:
        if self.answered_body is not None:
            self.answered_body.feed_eof()
            self.answered_body = None

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.open = False
        self.state.connections.give_back(self.client)
        self.end_answered_body()
        self.handler.connection_lost(exc)


@web.middleware
async def request_clock(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The header clock stops while a request is handled and restarts once it is answered."""
    protocol = request.transport.get_protocol() if request.transport else None
    connection = protocol if isinstance(protocol, Connection) else None
    if connection is not None:
        connection.disarm()
        connection.answered_body = None
    try:
        return await handler(request)
    finally:
        if connection is not None and connection.open:
            connection.answered_body = request.content
            connection.arm()


class Listener:
    """Accepts connections itself, so that a refused one is closed before the next accept.

    (asyncio's own accept loop takes up to a backlog of connections before any is closed:
    under a flood that alone runs the process out of descriptors.) Out of descriptors all the
    same, it stops accepting for a second and says so once.
    """

    def __init__(
        self, sock: socket.socket, state: ServerState, handler: Callable[[], asyncio.Protocol]
    ) -> None:
        self.sockets = [sock]
        self.state = state
        self.handler = handler
        self._starting: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        listening = self.sockets[0]
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                log.error("socket.accept() out of system resource", exc_info=exc)
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(ACCEPT_RETRY_SECONDS, self._resume)
                return
            client = str(peer[0]) if isinstance(peer, tuple) else ""
            refusal = self.state.connections.take(client)
            if refusal is not None:
                self.state.refuse(Transfer(client, "-", "-"), refusal)
                with contextlib.suppress(OSError):
                    sock.send(_busy_answer(refusal), socket.MSG_DONTWAIT)
                sock.close()
                continue
            task = self._loop.create_task(self._start(sock, client))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, sock: socket.socket, client: str) -> None:
        sock.setblocking(False)
        try:
            await self._loop.connect_accepted_socket(
                lambda: Connection(self.handler(), self.state, client), sock
            )
        except OSError:
            sock.close()
            self.state.connections.give_back(client)

    def _resume(self) -> None:
        if self.sockets[0].fileno() >= 0:
            self._loop.add_reader(self.sockets[0].fileno(), self._accept)

    def close(self) -> None:
        listening = self.sockets[0]
        if listening.fileno() >= 0:
            self._loop.remove_reader(listening.fileno())
            listening.close()


def _busy_answer(refusal: str) -> bytes:
    text = f"server busy: {refusal.replace('_', ' ')} in use, retry later\n".encode()
    return _BUSY % (RETRY_AFTER_SECONDS, len(text), text)


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port ("::" takes IPv4 too where the system allows)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = family == socket.AF_INET6 and socket.has_dualstack_ipv6()
    return socket.create_server(
        (host, port), family=family, backlog=LISTEN_BACKLOG, dualstack_ipv6=dualstack
    )


class GuardedSite(web.BaseSite):
    """A TCP site whose connections come through a `Listener` and a `Connection` each."""

    def __init__(self, runner: web.AppRunner, state: ServerState, host: str, port: int) -> None:
        super().__init__(runner)
        self.state = state
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        sock = listening_socket(self._host, self._port)
        self._server = Listener(sock, self.state, server)  # type: ignore[assignment]


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
            message = f"{message}: {_error_name(exc)} {' '.join(str(exc).split())}".rstrip()
            record.exc_info, record.exc_text = None, None
        if held_back := self._held_back.pop(key, 0):
            message += f" ({held_back} more like this in the last {now - since:.0f} s)"  # type: ignore[operator]
        record.msg, record.args = message, None
        return True


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, type(exc).__name__)
    return type(exc).__name__
