"""Accuracy on shaped links: netprobe's figure within 2 % of iperf3's on the same link, in the
same test run, both directions, symmetric and asymmetric links."""

from __future__ import annotations

import asyncio

import pytest

from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import measure_line
from netprobe.measure.native import NativeBackend

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
