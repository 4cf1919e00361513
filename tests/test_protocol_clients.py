"""LibreSpeed, Cloudflare-style, ndt7 and iperf3: clients against `netprobe serve`, against the
iperf3 binary, against fixtures written from the public specs, and against servers that break
the protocol (each a clear failure with a reason, never a hang or a zero rate)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from netprobe.errors import ConfigError, MeasurementError, ProtocolError, ServerRefused
from netprobe.measure.cloudflare import CloudflareBackend, server_seconds
from netprobe.measure.engine import EngineOptions
from netprobe.measure.iperf3 import parse_report
from netprobe.measure.librespeed import LibreSpeedBackend, parse_server_list
from netprobe.measure.line import backend_for, measure_line
from netprobe.measure.ndt7 import SUBPROTOCOL, Ndt7Backend, parse_locate
from netprobe.measure.select import choose
from netprobe.serve import librespeed as librespeed_server
from netprobe.serve.app import bound_port, start_server
from netprobe.serve.state import ServerState

FIXTURES = Path(__file__).parent / "fixtures" / "protocols"
QUICK = EngineOptions(streams=2, duration_seconds=1.0, warmup_max_seconds=1.0, max_bytes=50 << 30)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """`netprobe serve` in this process, for control-path tests (no bulk transfers)."""
    runner = await start_server("127.0.0.1", 0)
    yield f"127.0.0.1:{bound_port(runner)}"
    await runner.cleanup()


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"127.0.0.1:{bound_port(runner)}"


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """Accepts connections and never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    listener = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    listener.close()


@pytest.fixture
async def wrong_protocol() -> AsyncIterator[str]:
    """A web server that speaks none of the protocols: HTML for everything, bad ndt7 JSON."""

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async def bad_ndt7(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,))
        await ws.prepare(request)
        await ws.send_str("this is not a measurement")
        await asyncio.sleep(1)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ndt/v7/upload", bad_ndt7)
    app.router.add_get("/ndt/v7/download", bad_ndt7)
    app.router.add_route("*", "/{tail:.*}", html)
    runner, address = await serve_app(app)
    yield address
    await runner.cleanup()


# -- fixtures from the public specs and projects ---------------------------------------------


def test_librespeed_server_list_fixture_parses() -> None:
    servers = parse_server_list((FIXTURES / "librespeed-servers.json").read_text(), "list")
    assert [s.base_url for s in servers] == [
        "https://ams.speedtest.example.net/backend",
        "https://fra.speedtest.example.org",
    ]
    assert servers[1].path(servers[1].dl_url) == "/backend/garbage.php"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "not JSON"),
        ("[]", "non-empty JSON array"),
        ('{"name": "x"}', "non-empty JSON array"),
        ('["x"]', "[0]: each server must be a JSON object"),
        ('[{"name": "a", "server": "//h/b", "ulURL": "e", "pingURL": "e"}]', "[0].dlURL"),
        (
            '[{"server": "ftp://h/", "dlURL": "g", "ulURL": "e", "pingURL": "e"}]',
            "[0].server: must be an http(s) URL",
        ),
    ],
)
def test_malformed_librespeed_lists_name_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_server_list(text, "servers.json")
    assert str(error.value).startswith("servers.json: ") and complaint in str(error.value)


def test_locate_v2_fixture_prefers_wss_urls() -> None:
    machines = parse_locate(json.loads((FIXTURES / "mlab-locate-v2.json").read_text()), "locate")
    assert [m.name for m in machines] == [
        "mlab1-fra05.mlab-oti.measurement-lab.org",
        "mlab2-ams08.mlab-oti.measurement-lab.org",
    ]
    assert (
        machines[0].download_url.startswith("wss://") and "access_token" in machines[0].upload_url
    )
    assert machines[0].host_port == ("ndt-mlab1-fra05.mlab-oti.measurement-lab.org", 443)


@pytest.mark.parametrize(
    ("answer", "error"),
    [({}, ServerRefused), ({"results": []}, ServerRefused), ({"results": [{}]}, ProtocolError)],
)
def test_locate_without_capacity_or_urls_is_a_clear_error(
    answer: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        parse_locate(answer, "locate")


def test_ndt7_measurement_fixture_is_what_the_client_reads() -> None:
    from netprobe.measure.ndt7 import _Ndt7Transfer

    transfer = _Ndt7Transfer("ws://x", "upload", 1.0)
    message = transfer._measurement((FIXTURES / "ndt7-measurement.json").read_text())
    assert message["AppInfo"] == {"ElapsedTime": 1250000, "NumBytes": 3145728}


def test_iperf3_captured_report_maps_to_a_receiver_figure() -> None:
    report = json.loads((FIXTURES / "iperf3-reverse-P2.json").read_text())
    result = parse_report(report, "download", 2, 1)
    assert result.ok and result.streams == 2
    assert result.bytes_per_second == pytest.approx(47.49e6 / 8, rel=0.01)
    assert result.method.measured_at == "receiver" and result.method.engine == "iperf 3.12"
    refused = parse_report(
        json.loads((FIXTURES / "iperf3-refused.json").read_text()), "download", 2, 1
    )
    assert not refused.ok and refused.bytes_per_second is None
    assert refused.reason == "refused" and "Connection refused" in (refused.error or "")


def test_server_timing_duration_is_read_in_seconds() -> None:
    assert server_seconds({"server-timing": "cfRequestDuration;dur=12.5"}) == 0.0125
    assert server_seconds({"server-timing": "cfL4;desc=x, cfRequestDuration;dur=3"}) == 0.003
    assert server_seconds({}) is None


# -- netprobe serve answers each protocol -------------------------------------------------------


async def test_serve_answers_librespeed_and_cloudflare_routes(server: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{server}/backend/garbage.php?ckSize=2") as response:
            assert len(await response.read()) == 2 << 20
        async with session.get(f"http://{server}/backend/getIP.php") as response:
            assert (await response.json())["processedString"] == "127.0.0.1"
        async with session.post(f"http://{server}/backend/empty.php", data=b"x" * 1000) as response:
            assert response.status == 200
        async with session.get(f"http://{server}/backend/garbage?ckSize=9999") as response:
            assert response.status == 400
        async with session.get(f"http://{server}/__down?bytes=1234") as response:
            assert len(await response.read()) == 1234
            assert response.headers["Server-Timing"].startswith("cfRequestDuration;dur=")
        async with session.post(f"http://{server}/__up", data=b"y" * 4321) as response:
            assert (await response.text()).strip() == "4321"


async def test_serve_ndt7_requires_the_subprotocol_and_honours_early_exit(server: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"ws://{server}/ndt/v7/download")
        assert refused.value.status == 400
        async with session.get(f"http://{server}/ndt/v7/download?early_exit=7") as response:
            assert response.status == 400
        received = 0
        async with session.ws_connect(
            f"ws://{server}/ndt/v7/download?early_exit=250", protocols=(SUBPROTOCOL,)
        ) as ws:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    received += len(message.data)
        assert 250_000_000 <= received < 252_000_000


async def test_ndt7_upload_takes_the_receivers_counters(server: str) -> None:
    backend = Ndt7Backend(f"ws://{server}")
    await backend.connect()
    result = await backend.measure("upload", QUICK)
    assert result.ok, result.error
    assert result.method.measured_at == "receiver" and result.streams == 1


async def test_ndt7_discovery_through_locate_v2(server: str) -> None:
    backend = Ndt7Backend(f"http://{server}/v2/nearest/ndt/ndt7")
    found = await backend.connect()
    assert found.url == f"ws://{server}/ndt/v7/download"


async def test_librespeed_carries_on_when_getip_fails_like_a_backend_without_geoip() -> None:
    @web.middleware
    async def failing_get_ip(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/backend/getIP"):
            raise web.HTTPInternalServerError(text="GeoIP database missing\n")
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[failing_get_ip])
    librespeed_server.add_routes(app, ServerState())
    runner, address = await serve_app(app)
    try:
        result = await measure_line(
            backend_for("librespeed", f"http://{address}/backend"), ["download"], QUICK
        )
    finally:
        await runner.cleanup()
    assert result.download is not None and result.download.ok, result.download


# -- servers that break the protocol ------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "url", "reason"),
    [
        ("librespeed", "http://{wrong}/backend", "not_librespeed"),
        ("librespeed", "http://{wrong}/servers.json", "bad_server_list"),
        ("cloudflare", "http://{wrong}/nothing/here", "not_cloudflare"),
        ("ndt7", "ws://{wrong}/elsewhere", "http_200"),
        ("librespeed", "http://{silent}/backend", "stalled"),
        ("cloudflare", "http://{silent}", "stalled"),
        ("iperf3", "iperf3://127.0.0.1:9", "refused"),
    ],
)
async def test_a_server_that_breaks_the_protocol_fails_with_a_reason(
    protocol: str, url: str, reason: str, wrong_protocol: str, silent: str
) -> None:
    backend = backend_for(protocol, url.format(wrong=wrong_protocol, silent=silent))
    options = EngineOptions(duration_seconds=1, time_limit_seconds=5, stall_seconds=2)
    async with asyncio.timeout(30):
        result = await measure_line(backend, ["download"], options)
    assert result.outcome == "failed"
    assert result.download is not None and result.download.bytes_per_second is None
    assert reason in (result.download.reason or ""), result.download.error


async def test_ndt7_garbage_measurements_fail_the_upload(wrong_protocol: str) -> None:
    backend = Ndt7Backend(f"ws://{wrong_protocol}")
    async with asyncio.timeout(30):
        result = await measure_line(backend, ["upload"], QUICK)
    assert result.upload is not None and result.upload.reason == "protocol"
    assert "not ndt7 JSON" in (result.upload.error or "")


async def test_selection_falls_back_past_dead_servers_and_names_every_failure(
    server: str, silent: str
) -> None:
    async def probe(address: str) -> float:
        if address == "dead":
            raise ProtocolError("connection refused", reason="refused")
        return 0.001 if address == silent else 0.002

    async def use(address: str) -> str:
        if address == silent:
            raise ProtocolError("accepted but never answered", reason="stalled")
        return "used"

    chosen, outcome = await choose(["dead", silent, server], probe, use)
    assert (chosen, outcome) == (server, "used")
    with pytest.raises(
        MeasurementError, match=r"dead: connection refused.*never answered"
    ) as error:
        await choose(["dead", silent], probe, use)
    assert error.value.reason == "no_server"


async def test_librespeed_list_picks_the_live_server(server: str, tmp_path: Path) -> None:
    entry = {"dlURL": "garbage.php", "ulURL": "empty.php", "pingURL": "empty.php"}
    servers = [
        {"name": "dead", "server": "http://127.0.0.1:9/backend", **entry},
        {"name": "lab", "server": f"http://{server}/backend", **entry},
    ]
    listing = tmp_path / "servers.json"
    listing.write_text(json.dumps(servers))
    chosen = await LibreSpeedBackend(str(listing)).connect()
    assert chosen.name == "lab"


async def test_cloudflare_latency_subtracts_server_timing(server: str) -> None:
    backend = CloudflareBackend(f"http://{server}")
    await backend.connect()
    assert 0 <= await backend.ping() < 1


# -- against netprobe serve and the iperf3 binary on a shaped link ------------------------------


@pytest.mark.lab
async def test_every_client_measures_the_shaped_link_like_iperf3(make_lab: object) -> None:
    lab = make_lab(down="50Mbit", up="50Mbit")  # type: ignore[operator]
    url = lab.start_netprobe_server()
    lab.start_iperf3_server()
    reference = {
        "download": lab.iperf3(reverse=True, seconds=3, omit=1)["bytes_per_second"],
        "upload": lab.iperf3(reverse=False, seconds=3, omit=1)["bytes_per_second"],
    }
    options = EngineOptions(duration_seconds=2, max_bytes=2 << 30)
    servers = {
        "librespeed": url + "/backend",
        "cloudflare": url,
        "ndt7": url.replace("http://", "ws://"),
        "iperf3": f"iperf3://{lab.server_ip}",
    }
    ratios = {}
    for protocol, target in servers.items():
        result = await measure_line(backend_for(protocol, target), ["download", "upload"], options)
        for measured in result.directions():
            assert measured.ok, f"{protocol} {measured.direction}: {measured.error}"
            ratios[protocol, measured.direction] = (
                measured.bytes_per_second / reference[measured.direction]  # type: ignore[operator]
            )
    print("ratio to iperf3:", {f"{p}/{d}": round(r, 3) for (p, d), r in ratios.items()})
    for key, ratio in ratios.items():
        assert ratio == pytest.approx(1.0, abs=0.10), key
