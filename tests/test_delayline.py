"""The lab's delay line against physics (root): ping sees the set round trip, one TCP stream
with a small window runs at window / round trip, iperf3's UDP loss is the set loss, and the line
carries far more than the rates the distance tests shape."""

from __future__ import annotations

import json
import re
import shutil
import statistics

import pytest
from lab import run

pytestmark = pytest.mark.lab


def test_ping_round_trip_is_the_set_delay(make_lab) -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping is missing (bash probes/dev-setup.sh installs iputils-ping)")
    lab = make_lab(down="100Mbit", rtt_ms=20)
    output = run("ping", "-n", "-c", "40", "-i", "0.05", lab.server_ip)
    rtts_ms = [float(ms) for ms in re.findall(r"time=([\d.]+) ms", output)]
    assert len(rtts_ms) == 40, output
    # The median is robust to the odd late wake-up on a busy machine.
    assert statistics.median(rtts_ms) == pytest.approx(20.0, abs=0.5), rtts_ms
    # Never faster than light: the line releases at most 0.1 ms early in each direction.
    assert min(rtts_ms) >= 19.75, rtts_ms
    stats = lab.delay_stats()
    assert stats["up"]["packets"] >= 40 and stats["down"]["packets"] >= 40
    assert stats["up"]["lost"] == stats["down"]["lost"] == 0


def test_one_stream_with_a_small_window_runs_at_window_over_round_trip(make_lab) -> None:
    lab = make_lab(down="100Mbit", rtt_ms=40)
    lab.start_iperf3_server()
    lab.wait_for_iperf3_idle()
    report = json.loads(
        run("iperf3", "-c", lab.server_ip, "-J", "-t", "4", "-O", "1", "-w", "128K", check=False)
    )
    assert "error" not in report, report["error"]
    end = report["end"]
    # The window the sender was given: the receiver's advertised window, in bytes.
    window_bytes = end["streams"][0]["sender"]["max_snd_wnd"]
    limit_bytes_per_second = window_bytes / 0.040
    achieved = end["sum_received"]["bits_per_second"] / 8
    # Far below the 100 Mbit/s shaped rate, so the window is what limits it.
    assert limit_bytes_per_second < 0.5 * 100e6 / 8
    assert 0.85 * limit_bytes_per_second < achieved < 1.02 * limit_bytes_per_second, (
        achieved,
        limit_bytes_per_second,
    )


def udp_receive_buffer_errors(netns: str) -> int:
    """Datagrams the kernel dropped in `netns` because a socket's buffer was full."""
    header, values = [
        line.split()
        for line in run("cat", "/proc/net/snmp", netns=netns).splitlines()
        if line.startswith("Udp:")
    ][:2]
    return int(values[header.index("RcvbufErrors")])


def test_udp_loss_is_the_set_loss(make_lab) -> None:
    lab = make_lab(down="200Mbit", rtt_ms=2, loss=0.05)
    lab.start_iperf3_server()
    lab.wait_for_iperf3_idle()
    overflowed = udp_receive_buffer_errors(lab.netns)
    # 24,000 datagrams: the binomial spread of 5 % loss is 3 % of it, the tolerance 10 %.
    report = json.loads(
        run(
            *("iperf3", "-c", lab.server_ip, "-J", "-u", "-b", "16M", "-l", "500", "-t", "6"),
            check=False,
        )
    )
    assert "error" not in report, report["error"]
    total = report["end"]["sum"]
    assert total["packets"] > 20_000
    # A receiver starved of CPU on a busy machine drops datagrams itself; the kernel counts them.
    overflowed = udp_receive_buffer_errors(lab.netns) - overflowed
    lost = (total["lost_packets"] - overflowed) / total["packets"]
    assert lost == pytest.approx(0.05, rel=0.10), (total, overflowed)
    stats = lab.delay_stats()
    assert stats["up"]["dropped"] == 0  # every loss was the random one asked for
    assert stats["up"]["lost"] / (stats["up"]["lost"] + stats["up"]["packets"]) == pytest.approx(
        0.05, rel=0.10
    )


def test_the_line_carries_far_more_than_the_shaped_rates(make_lab) -> None:
    """A floor that holds on a busy 2-core machine; benchmarks/bench_distance.py reports the
    real maximum (about 1.2 Gbit/s here when idle)."""
    lab = make_lab(down="2Gbit", rtt_ms=4)
    lab.start_iperf3_server()
    carried = lab.iperf3(reverse=True, seconds=3, omit=1)["bytes_per_second"]
    assert carried * 8 >= 150e6, f"{carried * 8 / 1e6:.0f} Mbit/s"
    stats = lab.delay_stats()
    assert stats["down"]["packets"] > 0 and stats["down"]["bytes"] >= carried * 3


@pytest.mark.parametrize("reorder", [False, True], ids=["in-order", "reordering"])
def test_jitter_spreads_the_delay_and_keeps_order_unless_asked(make_lab, reorder) -> None:
    lab = make_lab(down="200Mbit", rtt_ms=20, jitter_ms=4, reorder=reorder)
    lab.start_iperf3_server()
    lab.wait_for_iperf3_idle()
    # 1000 datagrams a second, 1 ms apart: a ±4 ms jitter would swap many of them. Received
    # here (-R), so that iperf3 counts the datagrams out of order itself.
    report = json.loads(
        run(
            *("iperf3", "-c", lab.server_ip, "-J", "-R", "-u", "-b", "4M", "-l", "500", "-t", "2"),
            check=False,
        )
    )
    assert "error" not in report, report["error"]
    (stream,) = report["end"]["streams"]
    out_of_order = stream["udp"]["out_of_order"]
    assert stream["udp"]["jitter_ms"] > 0.5  # iperf3's own jitter estimate sees the spread
    if reorder:
        assert out_of_order > 100, stream["udp"]
    else:
        assert out_of_order == 0, stream["udp"]
