"""Accuracy on shaped links: netprobe's figure within 2 % of iperf3's on the same link, in the
same test run, both directions, symmetric and asymmetric links."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lab import Lab

from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import measure_line
from netprobe.measure.native import NativeBackend
from netprobe.results import DirectionResult

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.parametrize(
    ("down", "up"),
    [("20Mbit", "20Mbit"), ("100Mbit", "100Mbit"), ("500Mbit", "500Mbit"), ("100Mbit", "20Mbit")],
)
def test_within_two_percent_of_iperf3(make_lab, down, up):
    lab = make_lab(down=down, up=up)
    lab.start_netprobe_server()
    lab.start_iperf3_server()
    result = asyncio.run(
        measure_line(
            NativeBackend(lab.netprobe_url),
            ["download", "upload"],
            EngineOptions(duration_seconds=4),
        )
    )
    reference = {"download": lab.iperf3(reverse=True), "upload": lab.iperf3(reverse=False)}
    for measured in result.directions():
        assert measured.ok, measured.error
        expected = reference[measured.direction]["bytes_per_second"]
        assert measured.bytes_per_second == pytest.approx(expected, rel=0.02), measured.direction
        # and the figure is TCP payload on the shaped rate: about 95.6 % of it
        shaped = lab.down if measured.direction == "download" else lab.up
        assert 0.90 < measured.bytes_per_second * 8 / float(shaped.removesuffix("Mbit")) / 1e6 < 1


def test_total_bytes_are_the_bytes_that_crossed_the_link(make_lab):
    """What a test reports as total_bytes is what it moved (the data budget and the cross-traffic
    gate count on it): nothing keeps going out after the test, on a slow, bloated uplink too."""
    lab = make_lab(down="20Mbit", up="5Mbit")
    lab.start_netprobe_server()

    def crossed(direction: str) -> int:
        side = "rx" if direction == "download" else "tx"
        return int(
            (Path("/sys/class/net") / lab.client_if / "statistics" / f"{side}_bytes").read_text()
        )

    async def measure(direction: str) -> tuple[int, int, int]:
        backend = NativeBackend(lab.netprobe_url)
        await backend.connect()
        before = crossed(direction)
        result = await backend.measure(direction, EngineOptions(streams=2, duration_seconds=1))
        returned = crossed(direction)
        await asyncio.sleep(1.0)
        assert result.ok, result.error
        return result.total_bytes, returned - before, crossed(direction) - before

    for direction in ("download", "upload"):
        total, at_return, later = asyncio.run(measure(direction))
        # Headers on top of the payload (the gate allows 7 %, and 5 % of the rate beyond).
        assert total <= at_return < 1.12 * total, direction
        assert later - at_return < 0.01 * total, direction  # no unsent buffer draining after


def test_the_defaults_stop_early_and_stay_accurate(make_lab):
    """With the default adaptive rules, a steady link costs less than the old rules' minimum
    (1.5 s of warm-up and a 3 s window at the line rate) and the figure stays within 1.5 %.
    The 20 Mbit/s upload's count climbs in lumps on this link (htb passes GSO bursts whole):
    its window runs 1.8-2.3 s until the figure is known within 1 %, counting 0.5-0.71 of that
    minimum (measured 2026-12-05; 0.6 failed 2 runs in 4)."""
    lab = make_lab(down="100Mbit", up="20Mbit")
    lab.start_netprobe_server()
    lab.start_iperf3_server()
    result = asyncio.run(
        measure_line(NativeBackend(lab.netprobe_url), ["download", "upload"], EngineOptions())
    )
    reference = {"download": lab.iperf3(reverse=True), "upload": lab.iperf3(reverse=False)}
    for measured in result.directions():
        assert measured.ok, measured.error
        rate = reference[measured.direction]["bytes_per_second"]
        assert measured.bytes_per_second == pytest.approx(rate, rel=0.015), measured.direction
        counted = measured.warmup_bytes + measured.bytes
        assert counted < 0.85 * rate * (1.5 + 3.0), measured.direction
        assert measured.total_bytes < rate * (1.5 + 3.0), measured.direction
        assert "ended by" in measured.method.window_rule


def test_a_slow_bloated_link_reads_its_ceiling(make_lab):
    """On the 10/2 link bytes arrive in lumps (htb lets 28-65 kB bursts through whole, behind a
    queue of seconds): with the defaults both directions read the link's payload ceiling (the
    htb rate x 1448/1514) within 1.5 %, where the end-point figure of a 6 s window strayed to
    +4 %. The ceiling is the reference: iperf3's short runs read 0.4-1 % low on this link."""
    for measured, ceiling in with_defaults_on_the_10_2_link(make_lab(down="10Mbit", up="2Mbit")):
        assert measured.bytes_per_second == pytest.approx(ceiling, rel=0.015), measured.direction
        assert measured.window_seconds < 12.5, measured.direction  # the slow line's limit


def test_a_slow_link_that_serializes_frames_is_read_with_little_data(make_lab):
    """On the same 10/2 link with frames arriving one by one (as from a modem, no 64 kB lumps)
    the rates of short spans agree: both directions read the ceiling within 1 % for a fraction
    of the data the lumpy link needs (5-6 MB down, 3-3.6 MB up, measured) and of the 12.6 and
    2.7 MB speedtest-cli moves (README)."""
    lab = make_lab(down="10Mbit", up="2Mbit", frames=True)
    for measured, ceiling in with_defaults_on_the_10_2_link(lab):
        assert measured.bytes_per_second == pytest.approx(ceiling, rel=0.01), measured.direction
        # at most 2.5 s of the line down and 8 s up, where the lumpy link took 4 and 12-14 s
        seconds_of_line = measured.total_bytes / ceiling
        assert seconds_of_line < (2.5 if measured.direction == "download" else 8.0), measured


def with_defaults_on_the_10_2_link(lab: Lab) -> list[tuple[DirectionResult, float]]:
    """Both directions measured with the defaults on `lab`, each beside the link's payload
    ceiling in bytes/s (the htb rate x 1448/1514); a failed direction fails the test."""
    lab.start_netprobe_server()
    result = asyncio.run(
        measure_line(NativeBackend(lab.netprobe_url), ["download", "upload"], EngineOptions())
    )
    measured_and_ceilings = []
    for measured in result.directions():
        assert measured.ok, measured.error
        shaped = lab.down if measured.direction == "download" else lab.up
        ceiling = float(shaped.removesuffix("Mbit")) * 1e6 / 8 * 1448 / 1514
        measured_and_ceilings.append((measured, ceiling))
    return measured_and_ceilings
