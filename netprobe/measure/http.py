"""A minimal HTTP/1.1 client on asyncio's buffered protocols, for the measurement hot path.

Why not aiohttp here: a download stream only needs to count body bytes. `recv_into` one
reusable buffer and a byte counter cost a fraction of aiohttp's per-chunk `bytes` objects and
stream-reader bookkeeping (benchmarks/bench_client.py measures both), which matters on a
Raspberry Pi at 1 Gbit/s. Control requests (hello, results) go through the same code, so there
is one HTTP stack on the client.

    conn = await Connection.open(url, timeout_seconds=5)
    status, headers, body = await conn.request("GET", "/netprobe/v1/hello")
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from netprobe.errors import ProtocolError, TransportError

# A download reads into a large buffer: fewer reads. Other connections (control, latency,
# upload replies) read small answers: zeroing a megabyte for each cost 0.6 ms a connection.
_RECV_BUFFER_BYTES = 64 * 1024
_DOWNLOAD_BUFFER_BYTES = 1 << 20
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets, unsent data dropped
_MAX_HEADER_BYTES = 64 * 1024
# A download stream wakes the event loop only once this much has arrived (SO_RCVLOWAT): a
# quarter of the wake-ups and half the CPU per byte at 100 Mbit/s. Progress is sampled from
# TCP_INFO, so what waits in the socket is still counted on time.
_DOWNLOAD_LOWAT_BYTES = 128 * 1024
# struct tcp_info (linux/tcp.h), the fields we read: tcpi_snd_mss (u32 at byte 16),
# tcpi_sacked (u32 segments at 28), tcpi_rtt (u32 µs at 68), tcpi_rcv_rtt (u32 µs at 92),
# tcpi_bytes_acked and tcpi_bytes_received (u64 at 120 and 128, Linux >= 4.1), tcpi_min_rtt
# (u32 µs at 148, Linux >= 4.6), tcpi_bytes_sent (u64 at 200, retransmissions included, Linux
# >= 4.19; read only when a stream ends).
_TCP_INFO = struct.Struct("=16xI8xI36xI20xI24xQQ12xI")
_TCP_INFO_SENT = struct.Struct("=200xQ")
_TCP_INFO_BYTES = _TCP_INFO.size


class TcpInfo(NamedTuple):
    """What the kernel knows of one connection, in bytes and seconds."""

    acked_bytes: int  # cumulatively: everything before the first hole
    sacked_bytes: int  # selectively acknowledged past a hole: arrived, not yet in order
    received_bytes: int
    rtt_seconds: float  # smoothed, from our own data's acknowledgements (the sending side)
    receiver_rtt_seconds: float  # estimated while receiving (the downloading side)
    min_rtt_seconds: float  # the path's minimum, the handshake included


@dataclass(frozen=True)
class Endpoint:
    """Where a server is, parsed once from its URL."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError(f"bad port in URL {url!r}") from exc
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class _Response:
    """Parser state for one response: headers first, then a body counted or kept."""

    def __init__(self, keep_body: bool, on_body: Callable[[int], None] | None) -> None:
        self.keep_body = keep_body
        self.on_body = on_body
        self.head = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.remaining = -1  # -1: until the connection closes
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A failure nobody waits for any more (the stream was stopped) is not an error.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())

    def feed_head(self, data: memoryview) -> int:
        """Take header bytes; return how many of `data` were consumed."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > _MAX_HEADER_BYTES:
                raise ProtocolError("response headers too large: not an HTTP server we can use")
            return len(data)
        consumed = len(data) - (len(self.head) - end - 4)
        self._parse_head(bytes(self.head[:end]))
        return consumed

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.1 response: {lines[0][:60]!r}")
        try:
            self.status = int(status_line[1])
        except ValueError as exc:
            raise ProtocolError(f"bad HTTP status line: {lines[0][:60]!r}") from exc
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if "chunked" in self.headers.get("transfer-encoding", ""):
            raise ProtocolError("chunked responses are not part of the netprobe protocol")
        length = self.headers.get("content-length")
        if self.status in (204, 304):
            self.remaining = 0
        elif length is not None:
            try:
                self.remaining = int(length)
            except ValueError as exc:
                raise ProtocolError(f"bad Content-Length: {length!r}") from exc
        self.head = bytearray()

    def feed_body(self, n: int, data: memoryview) -> None:
        if self.remaining >= 0:
            n = min(n, self.remaining)
            self.remaining -= n
        if self.keep_body or self.status != 200:
            # Error pages are kept (bounded) for the message and never counted as payload.
            if len(self.body) < _MAX_HEADER_BYTES:
                self.body += data[:n]
        elif self.on_body is not None:
            self.on_body(n)
        if self.remaining == 0:
            self.finish()

    def finish(self, error: Exception | None = None) -> None:
        """Complete the response once; later calls (or a waiter that gave up) change nothing."""
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


class _ClientProtocol(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buffer = bytearray(_RECV_BUFFER_BYTES)
        self.view = memoryview(self.buffer)
        self.transport: asyncio.Transport | None = None
        self.response: _Response | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: Exception | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.lowat = 1
        self.head_bytes = 0  # response heads received so far, to tell payload from framing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def grow_buffer(self, n_bytes: int) -> None:
        if len(self.buffer) < n_bytes:
            self.buffer = bytearray(n_bytes)
            self.view = memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        response = self.response
        if response is None or response.done.cancelled():
            return  # bytes nobody waits for any more: ignore them
        data = self.view[:nbytes]
        try:
            if response.status == 0:
                consumed = response.feed_head(data)
                self.head_bytes += consumed
                data = data[consumed:]
                if response.status == 0:
                    return
                if response.remaining == 0:
                    response.finish()
                    return
            response.feed_body(len(data), data)
            if 0 <= response.remaining < self.lowat:
                self.set_lowat(1)  # the tail of the body must not wait for bytes never sent
        except ProtocolError as exc:
            self._fail(exc)

    def set_lowat(self, n: int) -> None:
        """Wake up only when n bytes wait in the socket (1: for every byte)."""
        if n != self.lowat and self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
                self.lowat = n

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        if self.response is not None:
            self.response.finish(exc)
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        response = self.response
        if response is not None:
            if response.status and response.remaining < 0:
                response.finish()  # a body delimited by the end of the connection
            else:
                response.finish(
                    TransportError("the server closed the connection mid-response", reason="reset")
                )
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._can_write.set()
        response = self.response
        if response is not None:
            if exc is None and response.status and response.remaining < 0:
                response.finish()
            else:
                response.finish(
                    TransportError(
                        f"connection reset by the server ({exc or 'closed'})", reason="reset"
                    )
                )
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drain(self) -> None:
        await self._can_write.wait()
        if self.closed.done():
            raise TransportError("connection reset by the server while sending", reason="reset")


class Connection:
    """One HTTP/1.1 keep-alive connection used by one measurement stream."""

    def __init__(self, endpoint: Endpoint, protocol: _ClientProtocol) -> None:
        self.endpoint = endpoint
        self._protocol = protocol
        assert protocol.transport is not None
        self._transport = protocol.transport
        self.sent_overhead_bytes = 0  # request heads sent so far

    @classmethod
    async def open(cls, url: str, *, timeout_seconds: float) -> Connection:
        endpoint = Endpoint.parse(url)
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if endpoint.scheme == "https" else None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(_ClientProtocol, endpoint.host, endpoint.port, ssl=context),
                timeout_seconds,
            )
        except TimeoutError as exc:
            raise TransportError(
                f"no answer from {endpoint.host}:{endpoint.port} within {timeout_seconds:g} s",
                reason="timeout",
            ) from exc
        except ConnectionRefusedError as exc:
            raise TransportError(
                f"connection refused by {endpoint.host}:{endpoint.port}", reason="refused"
            ) from exc
        except socket.gaierror as exc:
            raise TransportError(
                f"cannot resolve {endpoint.host}: {exc.strerror}", reason="dns"
            ) from exc
        except ssl.SSLError as exc:
            raise TransportError(
                f"TLS handshake with {endpoint.host} failed: {exc.reason}", reason="tls"
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"cannot reach {endpoint.host}:{endpoint.port}: {exc.strerror or exc}",
                reason="unreachable",
            ) from exc
        # Socket buffers are left to the kernel's autotuning: a fixed SO_SNDBUF would switch it
        # off and, on a slow uplink, queue seconds of data that the window would then miscount.
        return cls(endpoint, protocol)

    def _head(self, method: str, path: str, extra: str) -> bytes:
        return (
            f"{method} {self.endpoint.base_path}{path} HTTP/1.1\r\n"
            f"Host: {self.endpoint.host_header}\r\nUser-Agent: netprobe\r\n{extra}\r\n"
        ).encode("latin-1")

    def _expect(self, keep_body: bool, on_body: Callable[[int], None] | None) -> _Response:
        if self._protocol.closed.done():
            raise TransportError("connection already closed by the server", reason="reset")
        response = _Response(keep_body, on_body)
        self._protocol.response = response
        return response

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """A small request whose response body is kept (control messages)."""
        response = self._expect(True, None)
        extra = headers + (f"Content-Length: {len(body)}\r\n" if body or method == "POST" else "")
        self._transport.write(self._head(method, path, extra) + body)
        await response.done
        return response.status, response.headers, bytes(response.body)

    async def download(
        self, path: str, on_body: Callable[[int], None]
    ) -> tuple[int, dict[str, str], bytes]:
        """GET whose 200 body is only counted, through `on_body(nbytes)`, never kept."""
        response = self._expect(False, on_body)
        self._protocol.grow_buffer(_DOWNLOAD_BUFFER_BYTES)
        self._protocol.set_lowat(_DOWNLOAD_LOWAT_BYTES)
        self._transport.write(self._head("GET", path, ""))
        await response.done
        return response.status, response.headers, bytes(response.body)

    async def upload(
        self, path: str, payload: Payload, n_bytes: int, on_sent: Callable[[int], None]
    ) -> tuple[int, dict[str, str], bytes]:
        """POST a body of `n_bytes` of `payload` repeated; return the reply.

        On a plain TCP connection the kernel sends the body from the payload's file, in a
        thread that sleeps in sendfile(2) until a whole file's worth has gone: a handful of
        wake-ups a second at any rate, where writes through asyncio's transport woke the event
        loop for every chunk the socket buffer took (most of an upload's CPU on a slow link).
        Cancelled (the test stopped), it stops at once: the socket is shut down under it.
        """
        response = self._expect(True, None)
        head = self._head("POST", path, f"Content-Length: {n_bytes}\r\n")
        self.sent_overhead_bytes += len(head)
        self._transport.write(head)
        sock = self._transport.get_extra_info("socket")
        if payload.fd is None or sock is None or self.endpoint.scheme != "http":
            await self._write_body(payload.view, n_bytes, response, on_sent)
        else:
            sending = _in_thread(_send_file, sock.dup(), payload, n_bytes, on_sent)
            try:
                await asyncio.wait({sending, response.done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not sending.done():  # stopped, or the server answered before the body ended
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
            if sending.done():
                os.set_blocking(sock.fileno(), False)  # the socket goes back to asyncio alone
        await response.done
        return response.status, response.headers, bytes(response.body)

    async def _write_body(
        self,
        payload: memoryview,
        n_bytes: int,
        response: _Response,
        on_sent: Callable[[int], None],
    ) -> None:
        """The body through asyncio's transport (TLS, or no payload file on this system)."""
        left = n_bytes
        while left > 0 and not response.done.done():
            await self._protocol.drain()
            chunk = payload[: min(left, len(payload))]
            self._transport.write(chunk)
            left -= len(chunk)
            on_sent(len(chunk))

    def tcp_info(self) -> TcpInfo | None:
        """The kernel's view of this connection (TCP_INFO), if it gives one."""
        sock = self._transport.get_extra_info("socket")
        if sock is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
        except OSError:
            return None
        if len(info) < _TCP_INFO_BYTES:
            return None
        mss, sacked, rtt_us, rcv_rtt_us, acked, received, min_rtt_us = _TCP_INFO.unpack(info)
        return TcpInfo(
            acked, sacked * mss, received, rtt_us / 1e6, rcv_rtt_us / 1e6, min_rtt_us / 1e6
        )

    def acknowledged_payload(self) -> int | None:
        """Request payload bytes the server's TCP has acknowledged (upload progress).

        Selectively acknowledged bytes count: they crossed the link when the SACK came, not when
        a retransmission fills the hole before them (on a lossy, bloated uplink, counting only
        the in-order part moved 2-3 % of the rate across a short window's edge).
        """
        info = self.tcp_info()
        if info is None:
            return None
        return max(0, info.acked_bytes + info.sacked_bytes - self.sent_overhead_bytes)

    def received_payload(self) -> int | None:
        """Response body bytes the kernel has received, read by us or not (download progress)."""
        info = self.tcp_info()
        return None if info is None else max(0, info.received_bytes - self._protocol.head_bytes)

    def sent_payload(self) -> int | None:
        """Request payload bytes put on the line so far (retransmissions included)."""
        sock = self._transport.get_extra_info("socket")
        if sock is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SENT.size)
        except OSError:
            return None
        if len(info) < _TCP_INFO_SENT.size:
            return None
        return max(0, _TCP_INFO_SENT.unpack(info)[0] - self.sent_overhead_bytes)

    def sending_rtts(self) -> tuple[float, float] | None:
        """(RTT under load, minimum RTT) seconds while we send (upload)."""
        info = self.tcp_info()
        return (
            None
            if info is None or not info.rtt_seconds
            else (info.rtt_seconds, info.min_rtt_seconds)
        )

    def receiving_rtts(self) -> tuple[float, float] | None:
        """(RTT under load, minimum RTT) seconds while we receive (download)."""
        info = self.tcp_info()
        if info is None or not info.receiver_rtt_seconds:
            return None
        return info.receiver_rtt_seconds, info.min_rtt_seconds

    def usable(self) -> bool:
        """Open, idle and on the running event loop (a kept connection may outlive its loop)."""
        closed, response = self._protocol.closed, self._protocol.response
        return (
            not closed.done()
            and closed.get_loop() is asyncio.get_running_loop()
            and (response is None or response.done.done())
        )

    def abort(self) -> None:
        """Drop the connection at once: a reset, and what our socket buffer still holds is
        discarded rather than sent after us (a plain close would let the kernel drain it)."""
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self._transport.abort()

    async def close(self) -> None:
        self._transport.close()
        await self._protocol.closed


async def exchange(
    url: str, path: str, *, timeout_seconds: float, warm: bool = False
) -> tuple[int, dict[str, str], bytes, float]:
    """GET `path` on a fresh connection: (status, headers, body, seconds of the timed request).

    With `warm`, an untimed first request goes ahead, so the timed one is a pure round trip
    (latency). A server that accepts the connection and never answers is a ProtocolError with
    reason "stalled", within `timeout_seconds`.
    """
    conn = await Connection.open(url, timeout_seconds=timeout_seconds)
    try:
        async with asyncio.timeout(timeout_seconds):
            if warm:
                await conn.request("GET", path)
            start = time.perf_counter()
            status, headers, body = await conn.request("GET", path)
            return status, headers, body, time.perf_counter() - start
    except TimeoutError:
        raise ProtocolError(
            f"{url} accepted the connection but did not answer within {timeout_seconds:g} s",
            reason="stalled",
        ) from None
    finally:
        conn.abort()


@dataclass(frozen=True)
class Payload:
    """Incompressible upload payload: `view` in memory and, where the system allows (Linux's
    memfd), the same bytes repeated in a file of `file_bytes` the kernel sends from (`fd`)."""

    view: memoryview
    fd: int | None
    file_bytes: int


def _send_file(
    sock: socket.socket, payload: Payload, n_bytes: int, on_sent: Callable[[int], None]
) -> None:
    """Send `n_bytes` of the payload's file, blocking (runs in a thread of its own).

    `sock` is a duplicate of the connection's descriptor, closed here: asyncio may close its
    own at any time without this thread ever writing to a reused descriptor number. A socket
    shut down or reset under it ends the body quietly; the response says what happened.
    """
    assert payload.fd is not None
    with sock:
        sock.settimeout(None)  # blocking: the kernel waits for buffer space, not Python
        sent = 0
        with contextlib.suppress(OSError):
            while sent < n_bytes:
                offset = sent % payload.file_bytes
                count = min(payload.file_bytes - offset, n_bytes - sent)
                n = os.sendfile(sock.fileno(), payload.fd, offset, count)
                if n <= 0:
                    break
                sent += n
                on_sent(n)


def _in_thread(function: Callable[..., None], *args: object) -> asyncio.Future[None]:
    """Run `function(*args)` in a new thread; the future completes when it returns.

    Not the loop's default executor: that one has a few workers, and every stream needs one.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def done(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            function(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(done, error)

    threading.Thread(target=run, name="netprobe-upload", daemon=True).start()
    return future
