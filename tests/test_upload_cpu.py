"""Upload CPU per byte against iperf3's on the same shaped link, in the same run: the sender
lets the kernel do the work (sendfile in a blocking thread), so at a rate where moving bytes is
the cost, netprobe's client costs about what iperf3's does. Writes through asyncio's transport
cost 3.3-3.5x iperf3 here; the kernel-sent body 1.3-1.8x."""

from __future__ import annotations

import asyncio

import pytest

from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import measure_line
from netprobe.measure.native import NativeBackend

pytestmark = [pytest.mark.lab]

# Generous for a busy 2-core machine; the sender that woke Python per chunk fails it.
WITHIN_TIMES_IPERF3 = 2.5


def test_upload_cpu_per_byte_within_a_small_multiple_of_iperf3(make_lab):
    lab = make_lab(down="100Mbit", up="300Mbit")
    lab.start_netprobe_server()
    lab.start_iperf3_server()
    ratios = []
    for _ in range(2):  # noise from other processes only ever adds CPU: the better round counts
        result = asyncio.run(
            measure_line(
                NativeBackend(lab.netprobe_url),
                ["upload"],
                EngineOptions(streams=4, duration_seconds=3),
            )
        )
        upload = result.upload
        assert upload is not None and upload.ok, upload and upload.error
        ours = upload.cpu_seconds / upload.total_bytes
        reference = lab.iperf3(reverse=False, seconds=3, omit=1)
        theirs = reference["cpu_percent"] / 100 / reference["bytes_per_second"]
        ratios.append(ours / theirs)
    assert min(ratios) < WITHIN_TIMES_IPERF3, ratios
