"""The exporter's HTTP/1.1 server on raw sockets: keep-alive, HEAD, and a 4xx (then a closed
connection) for each kind of bad request; a bounded number of connections."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator

import pytest

from netprobe.httpserver import HttpLimits, HttpServer, Request, Response

LIMITS = HttpLimits(
    header_seconds=5,
    idle_seconds=5,
    connections=16,
    connections_per_address=8,
    head_bytes=4096,
    body_bytes=1024,
)


async def echo(request: Request) -> Response:
    """Says what it was asked, so a test sees the request as the app did."""
    line = f"{request.method} {request.path} {request.query} {len(request.body)}\n"
    return Response(200, line, headers={"X-Seen-Accept": request.headers.get("accept", "")})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await HttpServer.start(echo, "127.0.0.1", 0, LIMITS)
    yield server.port
    await server.close()


async def exchange(port: int, raw: bytes) -> bytes:
    """Send `raw`, read until the server closes the connection (b"" if it reset it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def statuses(answer: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


async def test_keep_alive_answers_each_request_on_one_connection(port: int) -> None:
    raw = (
        b"GET /metrics?name[]=a&name[]=b HTTP/1.1\r\nAccept: text/plain\r\nAccept: */*\r\n\r\n"
        b"POST /-/reload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /%2D/healthy HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    answer = await exchange(port, raw)
    assert statuses(answer) == [200, 200, 200]
    assert b"GET /metrics {'name[]': ['a', 'b']} 0\n" in answer
    assert b"X-Seen-Accept: text/plain, */*\r\n" in answer  # a repeated header, joined
    assert b"POST /-/reload {} 5\n" in answer
    assert b"GET /-/healthy {} 0\n" in answer  # the path percent-decoded
    assert answer.count(b"Connection: close") == 1  # only the last answer closes


async def test_head_is_answered_without_a_body(port: int) -> None:
    answer = await exchange(port, b"HEAD / HTTP/1.0\r\n\r\n")  # 1.0: closed after the answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert statuses(answer) == [200] and b"Content-Length: 12" in head and body == b""


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /metrics\r\n\r\n", 400),  # no version
        (b"GET http://probe/metrics HTTP/1.1\r\n\r\n", 400),  # not a path
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : probe\r\n\r\n", 400),  # space before the colon
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: a\r\n" * 101 + b"\r\n", 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    ],
    ids=[
        "no-version",
        "absolute-url",
        "no-colon",
        "space-before-colon",
        "folded-line",
        "negative-length",
        "http2",
        "long-request-line",
        "long-header",
        "many-headers",
        "big-body",
        "chunked",
    ],
)
async def test_a_bad_request_gets_its_4xx_and_a_closed_connection(
    port: int, raw: bytes, status: int
) -> None:
    # A good request pipelined behind the bad one is never answered: the connection closes.
    answer = await exchange(port, raw + b"GET / HTTP/1.1\r\n\r\n")
    assert statuses(answer) == [status]
    assert b"Connection: close\r\n" in answer


async def test_a_refused_client_still_reads_its_answer_behind_what_it_kept_sending(
    port: int,
) -> None:
    # Closed with those bytes unread, the connection would be reset and the 413 lost with it.
    answer = await exchange(
        port, b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + bytes(10**6)
    )
    assert statuses(answer) == [413]


async def test_a_silent_client_is_closed_after_the_header_time() -> None:
    limits = dataclasses.replace(LIMITS, header_seconds=0.3)
    server = await HttpServer.start(echo, "127.0.0.1", 0, limits)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: pro")  # and nothing more
        async with asyncio.timeout(30):
            assert await reader.read() == b""  # closed, not answered
        writer.close()
    finally:
        await server.close()


async def test_connections_beyond_the_limits_are_closed_unanswered() -> None:
    limits = dataclasses.replace(LIMITS, connections=4, connections_per_address=3)
    server = await HttpServer.start(echo, "127.0.0.1", 0, limits)

    async def opened(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, local_addr=(source, 0)
        )
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await reader.readuntil(b" 0\n")  # the end of echo's body: open, and kept alive
        return reader, writer

    async def answered(source: str) -> bool:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, local_addr=(source, 0)
        )
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        try:
            return b" 200 " in await reader.read()
        except ConnectionResetError:
            return False
        finally:
            writer.close()

    try:
        async with asyncio.timeout(30):
            held = [await opened("127.0.0.1") for _ in range(3)]
            assert not await answered("127.0.0.1")  # the address's limit
            held.append(await opened("127.0.0.2"))  # another address still gets in
            assert not await answered("127.0.0.3")  # the limit in all
            held.pop(0)[1].close()
            while not await answered("127.0.0.3"):  # the server notices the close at once
                await asyncio.sleep(0.05)
        for _, writer in held:
            writer.close()
    finally:
        await server.close()
