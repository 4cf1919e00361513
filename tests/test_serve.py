"""`netprobe serve` is safe to expose: caps, 4xx on nonsense, and clients that vanish."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import re
import sys
import tempfile
import time
import timeit
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import speedtest
from conftest import serving
from lab import free_port

from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import backend_for, measure_line
from netprobe.measure.ndt7 import SUBPROTOCOL
from netprobe.serve.app import bound_port, start_server
from netprobe.serve.guard import Summarized
from netprobe.serve.observe import AccessLog
from netprobe.serve.state import ServerLimits, Shares, Transfer, client_prefix


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


# -- fairness and deadlines ---------------------------------------------------------------------


@pytest.fixture
async def strict_server() -> AsyncIterator[tuple[int, Path]]:
    """A server with one test per client address and short deadlines; yields port, access log."""
    with tempfile.TemporaryDirectory() as folder:
        access_log = Path(folder) / "access.log"
        runner = await start_server(
            "127.0.0.1",
            0,
            ServerLimits(
                tests_per_address=1,
                header_timeout_seconds=0.5,
                idle_body_timeout_seconds=0.5,
                max_request_seconds=5,
            ),
            access_log=str(access_log),
        )
        yield bound_port(runner), access_log
        await runner.cleanup()


def session_from(address: str, port: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    return aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector)


async def test_a_client_over_its_share_gets_503_and_others_do_not_notice(strict_server):
    port, access_log = strict_server
    async with session_from("127.0.0.2", port) as greedy, session_from("127.0.1.3", port) as other:
        held = await greedy.get("/netprobe/v1/download?bytes=10000000&test=first")
        async with greedy.get("/netprobe/v1/download?bytes=10&test=second") as refused:
            assert refused.status == 503 and int(refused.headers["Retry-After"]) > 0
            assert "tests per address" in await refused.text()
        async with other.get("/netprobe/v1/download?bytes=1000&test=mine") as response:
            assert response.status == 200 and len(await response.read()) == 1000
        held.close()
    lines = access_log.read_text().splitlines()
    assert any(
        re.fullmatch(
            r"\S+Z client=127\.0\.0\.2 protocol=native direction=download bytes=0 "
            r"seconds=0\.000 outcome=refused:tests_per_address",
            line,
        )
        for line in lines
    ), lines
    assert any("client=127.0.1.3 " in line and "bytes=1000 " in line for line in lines)


async def test_headers_that_never_end_are_cut_at_the_header_timeout(strict_server):
    port, _ = strict_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /netprobe/v1/ping HTTP/1.1\r\nHost: lab\r\nX-Slow: ")
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed without an answer
    writer.close()


async def test_an_upload_that_goes_quiet_gets_408_after_the_idle_timeout(strict_server):
    port, _ = strict_server

    async def stalls():
        yield b"x" * 1000
        await asyncio.sleep(30)

    async with session_from("127.0.0.4", port) as session:
        async with asyncio.timeout(5):
            response = await session.post("/netprobe/v1/upload?test=q&stream=0", data=stalls())
            assert response.status == 408 and "sent nothing" in await response.text()


async def test_speedtest_cli_uploads_that_send_less_than_declared_are_answered_at_once(
    strict_server,
):
    port, _ = strict_server
    # speedtest-cli declares 65536 bytes and sends 65529: the answer must not wait for the rest
    body = speedtest.HTTPUploaderData(65536, timeit.default_timer(), 10)
    body.pre_allocate()
    sent = body.read(1 << 20)
    assert len(sent) == 65529
    headers = {"Content-Length": "65536", "User-Agent": "Mozilla/5.0 speedtest-cli/2.1.3"}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST /speedtest/upload.php HTTP/1.1\r\nHost: lab\r\n{head}\r\n".encode() + sent)
    async with asyncio.timeout(2):
        answer = await reader.read(4096)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"size=65529")
    writer.close()


async def test_ndt7_never_agrees_to_compression(server):
    async with server.ws_connect("/ndt/v7/upload", protocols=(SUBPROTOCOL,), compress=15) as ws:
        assert ws.compress == 0
        await ws.close()


def test_repeated_errors_are_summarized_once_per_interval():
    logger = logging.getLogger("netprobe.test.summary")
    logger.propagate = False
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    handler.addFilter(Summarized(interval_seconds=0.2))
    logger.addHandler(handler)
    flood = OSError(errno.EMFILE, "Too many open files")
    for _ in range(1000):
        logger.error("socket.accept() out of system resource", exc_info=flood)
    time.sleep(0.25)
    logger.error("socket.accept() out of system resource", exc_info=flood)
    assert len(lines) == 2 and "Traceback" not in "".join(lines)
    assert "EMFILE" in lines[0] and "999 more like this" in lines[1]


def test_clients_are_counted_by_address_and_by_their_24_or_56_prefix():
    assert client_prefix("192.0.2.77") == "192.0.2.0/24"
    assert client_prefix("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert client_prefix("2001:db8:1:2ff::1") == "2001:db8:1:200::/56"
    shares = Shares("tests", total=10, per_address=2, per_prefix=3)
    assert shares.take("192.0.2.1") is None and shares.take("192.0.2.1") is None
    assert shares.take("192.0.2.1") == "tests_per_address"
    assert shares.take("192.0.2.2") is None
    assert shares.take("192.0.2.3") == "tests_per_prefix"
    assert shares.take("198.51.100.1") is None  # another prefix is not held back
    shares.give_back("192.0.2.1")
    assert shares.take("192.0.2.3") is None and shares.in_use == 4


def test_access_log_writes_every_test_and_a_flood_of_refusals_once_per_interval():
    stream = io.StringIO()
    access_log = AccessLog(stream, refusal_interval_seconds=0.2)
    for _ in range(100):
        access_log(Transfer("192.0.2.9", "-", "-", outcome="refused:connections_per_address"))
    access_log(Transfer("192.0.2.10", "native", "upload", n_bytes=5, outcome="ok"))
    time.sleep(0.25)
    access_log(Transfer("192.0.2.9", "-", "-", outcome="refused:connections_per_address"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(
        "client=192.0.2.9 protocol=- direction=- bytes=0 seconds=0.000 "
        "outcome=refused:connections_per_address"
    )
    assert "client=192.0.2.10 protocol=native direction=upload bytes=5 " in lines[1]
    assert lines[2].endswith("outcome=refused:connections_per_address repeats=99")


def test_a_paced_server_reads_as_its_pace():
    """`serve --rate` is the demo's line and an operator's reference: an upload to it reads the
    paced rate. Its handler reads slowly, and with the receive buffer left to autotuning the
    senders sat in zero-window probes backing off to about a second: streams stalled in turn,
    and a paced 20 Mbit/s upload read 11.5-20.3 Mbit/s over 17 runs (19.95-20.06 since)."""
    port = free_port()
    argv = [sys.executable, "-m", "netprobe", "serve", "--host", "127.0.0.1"]
    with serving([*argv, "--port", str(port), "--rate", "100M/20M"], port) as url:
        for _ in range(3):
            result = asyncio.run(
                measure_line(backend_for("native", url), ["upload"], EngineOptions())
            )
            upload = result.upload
            assert upload is not None and upload.ok, upload and upload.error
            assert upload.bytes_per_second * 8 == pytest.approx(20e6, rel=0.02)
