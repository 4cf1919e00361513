"""Ookla: the real speedtest-cli package against `netprobe serve`, and netprobe's Ookla backend."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from aiohttp import web

from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import backend_for, measure_line
from netprobe.measure.ookla import OoklaBackend, ServerChoice, redirected_speedtest
from netprobe.serve.app import bound_port, start_server


def speedtest_cli(base_url: str, *args: str) -> dict[str, object]:
    """The package's own command line (speedtest.shell) with speedtest.net answered by base_url."""
    done = subprocess.run(
        [sys.executable, "-m", "netprobe.measure.ookla", base_url, "--", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_server_answers_the_paths_speedtest_cli_requests(loopback_server: str) -> None:
    def get(path: str) -> bytes:
        with urllib.request.urlopen(loopback_server + path, timeout=5) as response:
            return response.read()  # type: ignore[no-any-return]

    assert b'upload_extension: "php"' in get("/")
    assert get("/speedtest/latency.txt?x=1.0") == b"test=test"
    assert len(get("/speedtest/random350x350.jpg?x=1")) == 2 * 350 * 350
    assert b'threadsperurl="4"' in get("/speedtest-config.php")
    servers = get("/speedtest-servers-static.php?threads=8")
    assert f'url="{loopback_server}/speedtest/upload.php"'.encode() in servers
    upload = urllib.request.Request(loopback_server + "/speedtest/upload.php", data=b"x" * 5000)
    with urllib.request.urlopen(upload, timeout=5) as response:
        assert response.read() == b"size=5000"


def test_speedtest_cli_mini_and_server_list_work_against_netprobe_serve(
    loopback_server: str,
) -> None:
    mini = speedtest_cli(loopback_server, "--mini", loopback_server + "/", "--no-upload")
    assert mini["server"]["sponsor"] == "Speedtest Mini"  # type: ignore[index]
    assert mini["bytes_received"] > 0  # type: ignore[operator]
    listed = speedtest_cli(loopback_server, "--server", "1", "--no-download")
    assert listed["server"]["id"] == "1"  # type: ignore[index]
    assert listed["bytes_sent"] > 0  # type: ignore[operator]


def test_python_entry_point_runs_the_unmodified_package(loopback_server: str) -> None:
    st = redirected_speedtest(loopback_server)
    # speedtest.net's configuration: every upload size the package knows, 32 KB to 7 MB
    assert st.config["sizes"]["upload"][0] == 32768 and st.config["sizes"]["upload"][-1] == 7340032
    st.get_best_server(st.set_mini_server(loopback_server + "/"))
    assert st.download() > 0
    assert st.results.bytes_received > 0


def test_server_choice_parses_pins_exclusions_and_urls() -> None:
    assert ServerChoice.parse("1234, -99,auto") == ServerChoice(pin=(1234,), exclude=(99,))
    assert ServerChoice.parse("http://lab:8080/").speedtest_net_url == "http://lab:8080"
    with pytest.raises(ValueError, match="not 'fast'"):
        ServerChoice.parse("fast")


async def test_backend_measures_against_netprobe_serve_with_its_method(
    loopback_server: str,
) -> None:
    result = await measure_line(
        backend_for("ookla", loopback_server), ["download"], EngineOptions(streams=2)
    )
    assert result.server.protocol == "ookla"
    assert result.server.url == loopback_server + "/speedtest/upload.php"
    down = result.download
    assert down is not None and down.ok, down
    assert down.bytes_per_second and down.bytes_per_second > 0
    assert down.method.aggregate == "total_over_wall_time"
    assert down.method.warmup_rule == "none"
    assert down.streams == 2
    assert result.idle_latency_seconds is not None


async def test_the_data_budget_trims_the_packages_plan_or_refuses(loopback_server: str) -> None:
    budget = 10_000_000
    result = await measure_line(
        OoklaBackend(loopback_server),
        ["download", "upload"],
        EngineOptions(streams=2, max_bytes=budget),
    )
    for measured in result.directions():
        assert measured.ok, measured.error
        assert 0 < measured.total_bytes <= budget
    tiny = await measure_line(
        OoklaBackend(loopback_server), ["download"], EngineOptions(max_bytes=100_000)
    )
    assert tiny.download is not None and tiny.download.reason == "budget"


async def test_excluding_the_only_server_is_a_failure_with_a_reason(
    loopback_server: str,
) -> None:
    backend = OoklaBackend(loopback_server)
    backend.choice = ServerChoice(exclude=(1,), speedtest_net_url=loopback_server)
    result = await measure_line(backend, ["download"], EngineOptions())
    assert result.outcome == "failed"
    assert result.download is not None and result.download.bytes_per_second is None
    assert result.download.reason == "no_server"


@pytest.fixture
async def broken_speedtest_net() -> object:
    """A host that answers speedtest.net's configuration path with garbage."""
    app = web.Application()

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<settings><client", content_type="text/xml")

    app.router.add_get("/speedtest-config.php", garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{bound_port(runner)}"
    await runner.cleanup()


async def test_malformed_configuration_is_a_protocol_error(broken_speedtest_net: str) -> None:
    result = await measure_line(OoklaBackend(broken_speedtest_net), ["download"], EngineOptions())
    assert result.download is not None and not result.download.ok
    assert result.download.reason == "protocol"
    assert "malformed" in (result.download.error or "").lower()


async def test_unreachable_speedtest_net_is_a_transport_error() -> None:
    runner = await start_server("127.0.0.1", 0)
    port = bound_port(runner)
    await runner.cleanup()  # nothing listens there any more
    result = await measure_line(
        OoklaBackend(f"http://127.0.0.1:{port}", timeout_seconds=2), ["upload"], EngineOptions()
    )
    assert result.upload is not None and result.upload.reason == "config_unreachable"


@pytest.mark.lab
def test_speedtest_cli_agrees_with_iperf3_on_a_shaped_link(make_lab: object) -> None:
    # Uploads of every configured size, 64 KiB among them (the package sends 7 bytes less
    # than it declares for that one): the server must answer what arrived.
    lab = make_lab(down="50Mbit", up="50Mbit")  # type: ignore[operator]
    url = lab.start_netprobe_server()
    lab.start_iperf3_server()
    measured = speedtest_cli(url, "--mini", url + "/")
    print(f"speedtest-cli {measured['download'] / 1e6:.2f}/{measured['upload'] / 1e6:.2f} Mbit/s")  # type: ignore[operator]
    down = lab.iperf3(reverse=True, seconds=4, omit=1)["bytes_per_second"]
    up = lab.iperf3(reverse=False, seconds=4, omit=1)["bytes_per_second"]
    print(f"iperf3 {down * 8e-6:.2f}/{up * 8e-6:.2f} Mbit/s")
    assert measured["download"] / 8 / down == pytest.approx(1.0, abs=0.10)  # type: ignore[operator]
    assert measured["upload"] / 8 / up == pytest.approx(1.0, abs=0.10)  # type: ignore[operator]
