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
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from netprobe.errors import ProtocolError, TransportError

_RECV_BUFFER_BYTES = 1 << 20
_MAX_HEADER_BYTES = 64 * 1024
# A download stream wakes the event loop only once this much has arrived (SO_RCVLOWAT): a
# quarter of the wake-ups and half the CPU per byte at 100 Mbit/s. Progress is sampled from
# TCP_INFO, so what waits in the socket is still counted on time.
_DOWNLOAD_LOWAT_BYTES = 128 * 1024
# struct tcp_info (linux/tcp.h), the fields we read: tcpi_snd_mss (u32 at byte 16),
# tcpi_sacked (u32 segments at 28), tcpi_rtt (u32 µs at 68), tcpi_rcv_rtt (u32 µs at 92),
# tcpi_bytes_acked and tcpi_bytes_received (u64 at 120 and 128, Linux >= 4.1), tcpi_min_rtt
# (u32 µs at 148, Linux >= 4.6).
_TCP_INFO = struct.Struct("=16xI8xI36xI20xI24xQQ12xI")
_TCP_INFO_BYTES = _TCP_INFO.size
# tcpi_bytes_sent (u64 at byte 200, Linux >= 4.19): everything our TCP handed to the network,
# retransmissions included; read on its own so an older kernel still gives the fields above.
_TCP_BYTES_SENT = struct.Struct("=200xQ")
# struct linger {l_onoff = 1, l_linger = 0 s}: close() resets and drops unsent data.
_LINGER_RESET = struct.pack("ii", 1, 0)


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
        self.sent_overhead_bytes = 0  # request heads and chunk framing sent so far

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
        self._protocol.set_lowat(_DOWNLOAD_LOWAT_BYTES)
        self._transport.write(self._head("GET", path, ""))
        await response.done
        return response.status, response.headers, bytes(response.body)

    async def upload(
        self,
        path: str,
        payload: memoryview,
        keep_sending: Callable[[], bool],
        on_sent: Callable[[int], None],
    ) -> tuple[int, dict[str, str], bytes]:
        """POST a chunked body of `payload` repeated while `keep_sending()`; return the reply."""
        response = self._expect(True, None)
        chunk_head = f"{len(payload):x}\r\n".encode()
        head = self._head("POST", path, "Transfer-Encoding: chunked\r\n")
        self.sent_overhead_bytes += len(head)
        self._transport.write(head)
        while keep_sending() and not response.done.done():
            await self._protocol.drain()
            self._transport.write(chunk_head)
            self._transport.write(payload)
            self._transport.write(b"\r\n")
            self.sent_overhead_bytes += len(chunk_head) + 2
            on_sent(len(payload))
        if not response.done.done():
            self._transport.write(b"0\r\n\r\n")
        await response.done
        return response.status, response.headers, bytes(response.body)

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

    def sent_payload(self) -> int | None:
        """Request payload bytes our TCP has put on the wire, acknowledged or not (upload cost).

        At the stop this is what the link carries in all: the segments already queued at the
        bottleneck still go out after the connection is reset, the unsent buffer does not.
        """
        sock = self._transport.get_extra_info("socket")
        if sock is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_BYTES_SENT.size)
        except OSError:
            return None
        if len(info) < _TCP_BYTES_SENT.size:
            return None
        (sent,) = _TCP_BYTES_SENT.unpack(info)
        return max(0, sent - self.sent_overhead_bytes)

    def received_payload(self) -> int | None:
        """Response body bytes the kernel has received, read by us or not (download progress)."""
        info = self.tcp_info()
        return None if info is None else max(0, info.received_bytes - self._protocol.head_bytes)

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
        """Drop the connection at once: a reset, and what waits in our socket buffer is never sent.

        A plain close() would let the kernel keep sending the unsent upload buffer (seconds of
        data on a slow uplink) after the test stopped counting: bytes the line carries and the
        data budget pays for that no total_bytes reports. SO_LINGER 0 makes the close a reset.
        """
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
