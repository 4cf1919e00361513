"""The same lab data as an English and a Simplified Chinese report, opened in headless Chromium.

Each page must load without console errors, show every section, say its language in
`<html lang>`, and draw every character with a real glyph: the fonts Chromium used for the
text (DevTools `CSS.getPlatformFontsForNode`) must cover it (a CJK font for the Chinese), and
no character may render as wide as the "missing glyph" box of a private-use code point. The
screenshots are kept beside the test's temporary files (report-en.jpg, report-zh_CN.jpg); the
ones in docs/img/ were made by this test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from compliance_records import campaign, seal
from test_report_html import DevTools, chromium_page, lab_records

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.evidence import ProbeKey
from netprobe.drives.result import DriveResult, DriveTransfer
from netprobe.i18n import use_language
from netprobe.report.document import Subscriber
from netprobe.report.render import render_report

CONTRACT = Contract.from_rates(download=100e6 / 8, upload=40e6 / 8)
SECTIONS = (
    "title",
    "period",
    "subscriber",
    "probe",
    "contract",
    "warnings",
    "verdicts",
    "accounts",
    "campaign-head",
    "over-time",
    "by-hour",
    "tests-head",
    "drives",
    "evidence",
)
SUBSCRIBER = Subscriber(
    "中国电信 Example", "千兆宽带 1000M", "0755-12345678", "深圳市南山区某路 1 号"
)

# Every distinct character of the visible text with its rendered width, next to the width of a
# private-use character no font has (drawn as the missing-glyph box).
GLYPHS = """(function () {
  var text = document.body.innerText;
  var chars = Array.from(new Set(Array.from(text))).filter(function (c) { return c.trim(); });
  function width(c) {
    var span = document.createElement("span");
    span.style.whiteSpace = "pre";
    span.textContent = c;
    document.body.appendChild(span);
    var w = span.getBoundingClientRect().width;
    span.remove();
    return w;
  }
  return JSON.stringify({
    lang: document.documentElement.lang,
    sections: Array.from(document.querySelectorAll("h1[id], h2[id], p[id]")).map(function (e) {
      return e.id;
    }),
    missing: width("\\uE000"),
    chars: chars.map(function (c) { return [c, width(c)]; })
  });
})()"""


async def render_in_chromium(
    page: Path, profile: Path, shot: Path
) -> tuple[dict[str, Any], list[str], DevTools]:
    """The page's glyph widths and sections, the font families used for its headings."""
    domains = ("Runtime", "Log", "Page", "Network", "DOM", "CSS")
    async with chromium_page(page, profile, domains) as tools:
        state = await tools.call("Runtime.evaluate", expression=GLYPHS, returnByValue=True)
        document = await tools.call("DOM.getDocument", depth=-1)
        found = await tools.call(
            "DOM.querySelectorAll",
            nodeId=document["root"]["nodeId"],
            selector="h1, h2, th, .verdict, #period",
        )
        families: list[str] = []
        for node in found["nodeIds"]:
            fonts = await tools.call("CSS.getPlatformFontsForNode", nodeId=node)
            families += [f["familyName"] for f in fonts["fonts"] if f["glyphCount"]]
        metrics = await tools.call("Page.getLayoutMetrics")
        height = metrics["cssContentSize"]["height"]
        picture = await tools.call(
            "Page.captureScreenshot",
            format="jpeg",
            quality=60,
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 1200, "height": min(height, 4000), "scale": 0.6},
        )
        shot.write_bytes(base64.b64decode(picture["data"]))
    return json.loads(state["result"]["value"]), families, tools


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    measured = asyncio.run(lab_records())
    start = datetime(2026, 3, 2, tzinfo=UTC)
    synthetic = campaign(start, days=6, per_day=12, rng=random.Random(5))
    key = ProbeKey.create(tmp_path_factory.mktemp("key") / "probe.key")
    moved = [
        {**r, "started_at": (start + timedelta(days=7, hours=i)).isoformat()}
        for i, r in enumerate(measured)
    ]
    drive = DriveResult(drive="pan-free", access="api", tier="free")
    drive.download = DriveTransfer("download", True, bytes_per_second=90e3, floor="critical")
    drive.started_at = (start + timedelta(days=7, hours=3)).isoformat()
    return seal([*synthetic, *moved, drive.to_dict()], key)


@pytest.mark.parametrize("language", ["en", "zh_CN"])
async def test_the_report_renders_every_glyph_in_each_language(
    language: str, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("chromium is not installed (bash probes/dev-setup.sh installs it)")
    use_language(language)
    try:
        config = ComplianceConfig(policies=["cn-miit", "de-bnetza"], timezone="Asia/Shanghai")
        html = render_report(records, CONTRACT, config, "html", subscriber=SUBSCRIBER)
    finally:
        use_language("en")
    page = tmp_path / f"report-{language}.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / f"report-{language}.jpg"

    state, families, tools = await render_in_chromium(page, tmp_path / "profile", shot)

    assert tools.problems() == []
    assert state["lang"] == {"en": "en", "zh_CN": "zh-CN"}[language]
    assert [s for s in SECTIONS if s not in state["sections"]] == []
    boxes = [c for c, width in state["chars"] if abs(width - state["missing"]) < 0.01]
    assert boxes == [], f"characters drawn as missing-glyph boxes: {boxes}"
    if language == "zh_CN":
        assert "签约速率（理论速率）" in html and "2026年3月2日" in html
        assert any("CJK" in f for f in families), families
        assert sum(ord(c) > 0x2E80 for c, _width in state["chars"]) > 100
    assert shot.stat().st_size > 20_000
