"""`netprobe serve` is safe to expose: caps, 4xx on nonsense, and clients that vanish."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from netprobe.serve.app import bound_port, start_server
from netprobe.serve.state import ServerLimits


@pytest.fixture
async def server():
    runner = await start_server(
        "127.0.0.1",
        0,
        ServerLimits(max_bytes_per_request=10_000_000, max_tests=2, max_request_seconds=2),
    )
    async with aiohttp.ClientSession(f"http://127.0.0.1:{bound_port(runner)}") as session:
        yield session
    await runner.cleanup()


async def test_hello_says_who_it_is_and_its_limits(server):
    async with server.get("/netprobe/v1/hello") as response:
        hello = await response.json()
    assert hello["service"] == "netprobe"
    assert hello["limits"]["max_bytes_per_request"] == 10_000_000


async def test_download_sends_exactly_the_bytes_asked_and_they_do_not_compress(server):
    import zlib

    async with server.get("/netprobe/v1/download?bytes=3000000&test=t1") as response:
        body = await response.read()
    assert len(body) == 3_000_000
    assert len(zlib.compress(body[:1_000_000])) > 990_000


async def test_upload_reports_what_the_receiver_saw(server):
    async with server.post("/netprobe/v1/upload?test=t2&stream=0", data=b"x" * 500_000) as response:
        report = await response.json()
    assert report["received_bytes"] == 500_000
    assert report["bytes"][-1] == 500_000
    assert report["t_seconds"] == sorted(report["t_seconds"])


@pytest.mark.parametrize(
    "path",
    [
        "/netprobe/v1/download?bytes=lots&test=t",
        "/netprobe/v1/download?bytes=-1&test=t",
        "/netprobe/v1/download?bytes=20000000&test=t",  # over the per-request cap
        "/netprobe/v1/download?bytes=10",  # no test id
        "/netprobe/v1/download?bytes=10&test=../../etc",
    ],
)
async def test_malformed_parameters_get_400(server, path):
    async with server.get(path) as response:
        assert response.status == 400
        assert "parameter" in await response.text()


async def test_too_many_concurrent_tests_get_503(server):
    opened = [
        await server.get(f"/netprobe/v1/download?bytes=10000000&test=busy{i}") for i in range(2)
    ]
    async with server.get("/netprobe/v1/download?bytes=10&test=third") as response:
        assert response.status == 503
        assert response.headers["Retry-After"]
    for response in opened:
        response.close()


async def test_a_client_that_vanishes_mid_transfer_does_not_hurt_it(server):
    for i in range(5):
        response = await server.get(f"/netprobe/v1/download?bytes=10000000&test=gone{i}")
        await response.content.read(65536)
        response.close()  # drop the connection mid-body
    await asyncio.sleep(0.2)
    async with server.get("/netprobe/v1/download?bytes=1000&test=after") as response:
        assert response.status == 200 and len(await response.read()) == 1000


async def test_an_upload_past_the_byte_cap_is_refused(server):
    async def body():
        for _ in range(30):
            yield b"y" * 1_000_000

    async with server.post("/netprobe/v1/upload?test=big&stream=0", data=body()) as response:
        assert response.status == 413


async def test_a_transfer_past_the_time_cap_is_cut(server):
    async def slow_body():
        for _ in range(10):
            yield b"z" * 1000
            await asyncio.sleep(0.5)

    async with server.post("/netprobe/v1/upload?test=slow&stream=0", data=slow_body()) as response:
        assert response.status == 408
        assert "time limit" in await response.text()


async def test_landing_page_names_the_protocols(server):
    async with server.get("/") as response:
        text = await response.text()
    assert "netprobe server" in text and "native" in text
