"""The HTML report opens in headless Chromium: it loads, the plots render, nothing errs.

The report is made from a synthetic two-week campaign plus, when the lab can be built (root),
two real measurements over a shaped 100/40 Mbit/s link. Chromium is driven over the DevTools
protocol (a small client on aiohttp's websocket): console messages, exceptions, log entries
and network requests are collected while the page loads, then the DOM is inspected.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from compliance_records import campaign, head_for, seal
from lab import Lab, lab_unavailable

from netprobe.compliance.config import POLICY_NAMES, ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.evidence import ProbeKey
from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import measure_line
from netprobe.measure.native import NativeBackend
from netprobe.report.render import render_report
from netprobe.report.verify import verify_file

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]
CONTRACT = Contract.from_rates(
    download=100e6 / 8, upload=40e6 / 8, download_normal=80e6 / 8, upload_normal=32e6 / 8
)

PAGE_STATE = """JSON.stringify({
  ready: document.documentElement.getAttribute("data-ready"),
  plots: Array.from(document.querySelectorAll("svg.plot")).map(function (svg) {
    var box = svg.getBoundingClientRect();
    var first = svg.querySelector(".pt, .bar");
    var mark = first ? first.getBoundingClientRect() : {width: 0, height: 0};
    return {kind: svg.getAttribute("class"), direction: svg.getAttribute("data-direction"),
            width: box.width, height: box.height, markWidth: mark.width, markHeight: mark.height,
            points: svg.querySelectorAll(".pt").length, bars: svg.querySelectorAll(".bar").length,
            contractLines: svg.querySelectorAll("line.contract").length};
  }),
  verdicts: Array.from(document.querySelectorAll(".verdict")).map(function (v) {
    return v.getAttribute("data-policy") + "/" + v.getAttribute("data-direction") + "/" +
      v.querySelector(".badge").textContent;
  }),
  rows: document.querySelectorAll("table.tests tr[id]").length,
  evidence: document.getElementById("evidence-state").textContent
})"""

CLICK_FIRST_CRITERION = """(function () {
  var button = document.querySelector("button[data-tests]");
  button.click();
  return [button.getAttribute("data-tests").split(" ").length,
          document.querySelectorAll("tr.decided").length];
})()"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: calls, and the events seen meanwhile."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self.last_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.socket.send_json({"id": self.last_id, "method": method, "params": params})
        while True:
            message = await self._receive()
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            await self._receive()

    async def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self.socket.receive_str(timeout=90))
        if "method" in message:
            self.events.append(message)
        return message

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries."""
        out = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:500])
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
                "warning",
            ):
                out.append(json.dumps(params["args"])[:500])
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] in (
                "error",
                "warning",
            ):
                out.append(params["entry"]["text"])
        return out

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]


@contextlib.asynccontextmanager
async def chromium_page(
    page: Path, profile: Path, domains: tuple[str, ...]
) -> AsyncIterator[DevTools]:
    """Headless Chromium with `page` loaded, driven over DevTools with `domains` enabled; the
    browser is closed on the way out."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium is not None
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(600):
            if port_file.exists() and port_file.read_text().count("\n") >= 1:
                break
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                tools = DevTools(socket)
                for domain in domains:
                    await tools.call(f"{domain}.enable")
                await tools.call("Page.navigate", url=page.as_uri())
                await tools.wait_for("Page.loadEventFired")
                yield tools
                await tools.call("Browser.close")
    finally:
        try:
            browser.wait(timeout=20)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()


async def open_in_chromium(page: Path, profile: Path) -> tuple[dict[str, Any], Any, DevTools]:
    """Load `page`; its DOM state, the result of clicking a criterion, and the session."""
    async with chromium_page(page, profile, ("Runtime", "Log", "Page", "Network")) as tools:
        state = await tools.call("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)
        clicked = await tools.call(
            "Runtime.evaluate", expression=CLICK_FIRST_CRITERION, returnByValue=True
        )
        shot = await tools.call("Page.captureScreenshot", format="png")
        (profile.parent / "report.png").write_bytes(base64.b64decode(shot["data"]))
    return json.loads(state["result"]["value"]), clicked["result"]["value"], tools


async def lab_records() -> list[dict[str, Any]]:
    """Two real tests over a shaped 100/40 Mbit/s link, or none when the lab is unavailable."""
    if lab_unavailable():
        return []
    options = EngineOptions(duration_seconds=2.0, time_limit_seconds=20.0, warmup_max_seconds=3.0)
    out = []
    with Lab("100Mbit", "40Mbit") as lab:
        backend = NativeBackend(lab.start_netprobe_server())
        for _ in range(2):
            result = await measure_line(backend, ["download", "upload"], options)
            result.probe_id = "probe-test"
            out.append(result.to_dict())
    return out


async def test_the_html_report_renders_in_chromium_without_errors(tmp_path: Path) -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("chromium is not installed (bash probes/dev-setup.sh installs it)")
    measured = await lab_records()
    start = datetime.now(UTC) - timedelta(days=15)
    records = campaign(start, days=14, per_day=12, rng=random.Random(11)) + measured
    key = ProbeKey.create(tmp_path / "probe.key")
    config = ComplianceConfig(policies=list(POLICY_NAMES), timezone="Europe/Berlin")
    page = tmp_path / "report.html"
    sealed = seal(records, key)
    page.write_text(render_report(sealed, CONTRACT, config, "html", head=head_for(sealed, key)))
    assert verify_file(page, {key.public_key_b64}).count == len(records)

    state, clicked, tools = await open_in_chromium(page, tmp_path / "profile")

    assert tools.problems() == []
    assert [u for u in tools.requests() if not u.startswith(("file:", "data:"))] == []
    assert state["ready"] == "1"  # the inline script ran to its end
    assert state["rows"] == len(records)
    assert len(state["verdicts"]) == 9  # four policies × 2 directions + au-accc download
    assert all(
        v.rsplit("/", 1)[1] in ("compliant", "deviation", "undecided") for v in state["verdicts"]
    )
    kinds = {(p["kind"], p["direction"]) for p in state["plots"]}
    assert kinds == {
        (f"plot {kind}", direction)
        for kind in ("time-plot", "hour-plot")
        for direction in ("download", "upload")
    }
    for plot in state["plots"]:
        assert plot["width"] > 500 and plot["height"] > 150
        assert plot["markWidth"] > 0 and plot["markHeight"] > 0
        assert plot["contractLines"] == 2  # theoretical and normal; no minimum in this contract
        if "time-plot" in plot["kind"]:
            assert plot["points"] == sum(
                isinstance(r.get(plot["direction"]), dict) for r in records
            )
        else:
            assert 0 < plot["bars"] <= 24
    assert "records form an unbroken chain" in state["evidence"]
    deciding, highlighted = clicked
    assert highlighted == deciding > 0
    assert (tmp_path / "report.png").stat().st_size > 10_000
    if measured:
        lab_ids = {r["id"] for r in measured}
        assert lab_ids <= {r["id"] for r in json.loads(_embedded(page))["records"]}
        rates = [r["download"]["bytes_per_second"] for r in measured]
        assert all(r is not None and 60e6 / 8 < r < 101e6 / 8 for r in rates)


def _embedded(page: Path) -> str:
    text = page.read_text()
    start = text.index('id="netprobe-records">') + len('id="netprobe-records">')
    return text[start : text.index("</script>", start)]
