"""Latency: ICMP, SYN and connect pings, the unprivileged fallback, traceroute, and loaded
latency on a shaped link with a deep queue."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from netprobe.errors import TransportError
from netprobe.events import Event, Recorder
from netprobe.measure.latency import LatencyResult, LoadedLatency, ping, traceroute
from netprobe.results import DirectionResult, LineResult, Server

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root (CI runs as root)")


def test_statistics_of_a_ping_series() -> None:
    result = LatencyResult("h", "icmp", sent=5, rtts_seconds=[0.010, 0.012, 0.011, 0.015])
    assert result.loss_ratio == pytest.approx(0.2)
    assert result.min_seconds == 0.010
    assert result.median_seconds == pytest.approx(0.0115)
    assert result.jitter_seconds == pytest.approx((0.002 + 0.001 + 0.004) / 3)
    assert result.to_dict()["received"] == 4


async def test_sampler_keeps_answers_and_skips_failures() -> None:
    answers = iter([0.01, TransportError("lost", reason="timeout"), 0.03])

    async def probe() -> float:
        answer = next(answers, 0.02)
        if isinstance(answer, Exception):
            raise answer
        return answer

    loaded = LoadedLatency(probe, interval_seconds=0.01)
    sampler = asyncio.create_task(loaded.run())
    await asyncio.sleep(0.1)
    loaded.stop()
    rtts = await sampler
    assert rtts[:2] == [0.01, 0.03] and 0.02 in rtts


async def test_loaded_pings_ride_on_the_engines_samples() -> None:
    """Once the engine's samples come, a ping goes out on a sample (the loop is awake then), not
    on a timer of its own, never sooner than the interval; the events reach the test's sink."""
    recorder = Recorder()
    samples_at_ping: list[int] = []

    async def probe() -> float:
        samples_at_ping.append(len(recorder.events))
        return 0.001

    loaded = LoadedLatency(probe, recorder, interval_seconds=0.2)
    loaded.emit(Event(kind="sample", direction="upload"))  # the engine has started
    sampler = asyncio.create_task(loaded.run())
    for _ in range(5):
        await asyncio.sleep(0.21)
        loaded.emit(Event(kind="sample", direction="upload"))  # due: a ping goes out on it
        for _ in range(5):
            await asyncio.sleep(0)  # the woken pinger runs
        loaded.emit(Event(kind="sample", direction="upload"))  # too soon after: no ping
    loaded.stop()
    await sampler
    assert len(recorder.events) == 11
    assert samples_at_ping == [1, 2, 4, 6, 8, 10]


async def test_connect_ping_counts_answers_and_refusals(loopback_server: str) -> None:
    port = int(loopback_server.rsplit(":", 1)[1])
    answered = await ping("127.0.0.1", method="tcp_connect", port=port, count=3)
    assert answered.received == 3 and answered.note is None
    refused = await ping("127.0.0.1", method="tcp_connect", port=9, count=1)
    assert refused.received == 1  # a RST is a round trip too


@needs_root
async def test_icmp_and_syn_ping_with_privilege() -> None:
    # This proves the privileged paths work, not loopback's loss rate: on a busy machine
    # scapy's capture can start after a reply has passed, so one answer of five is enough.
    icmp = await ping("127.0.0.1", method="icmp", count=5, interval_seconds=0.01)
    assert icmp.method == "icmp" and icmp.received >= 1 and icmp.note is None
    syn = await ping("127.0.0.1", method="tcp_syn", port=9, count=5, interval_seconds=0.01)
    assert syn.method == "tcp_syn" and syn.received >= 1  # the RST answers the SYN
    hops = await asyncio.to_thread(traceroute, "127.0.0.1", 3)
    assert hops[-1].reached and hops[-1].address == "127.0.0.1"


@needs_root
@pytest.mark.skipif(shutil.which("capsh") is None, reason="needs capsh (libcap2-bin)")
def test_without_cap_net_raw_the_cli_falls_back_and_says_so(loopback_server: str) -> None:
    port = loopback_server.rsplit(":", 1)[1]
    command = (
        f"{sys.executable} -m netprobe latency 127.0.0.1 --count 2 --hops 2 "
        f"--fallback-port {port} --json"
    )
    done = subprocess.run(
        ["capsh", "--drop=cap_net_raw", "--", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["method"] == "tcp_connect" and report["received"] == 2
    assert (
        report["note"]
        == f"no CAP_NET_RAW for icmp: measured TCP connect time to port {port} instead"
    )
    assert report["path_error"] == "traceroute needs CAP_NET_RAW (run as root)"


def test_latency_cli_rejects_icmp_with_tcp() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", "latency", "127.0.0.1", "--icmp", "--tcp", "80"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "exclude each other" in done.stderr


def test_latency_mapping_survives_a_round_trip() -> None:
    download = DirectionResult(
        "download", ok=True, bytes_per_second=1e6, loaded_latency_seconds=0.2
    )
    result = LineResult(server=Server(url="u"), download=download, idle_latency_seconds=0.01)
    data = result.to_dict()
    assert data["latency"] == {"idle_seconds": 0.01, "loaded_seconds": {"download": 0.2}}
    assert LineResult.from_dict(json.loads(json.dumps(data))) == result


@pytest.mark.lab
def test_loaded_latency_is_several_times_idle_on_a_deep_queue(make_lab: object) -> None:
    lab = make_lab(down="20Mbit", up="20Mbit")  # type: ignore[operator]
    url = lab.start_netprobe_server()
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", "speed", "--server", url, "--duration", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    latency = json.loads(done.stdout)["latency"]
    idle = latency["idle_seconds"]
    loaded = latency["loaded_seconds"]
    print(f"idle {idle * 1000:.2f} ms, loaded {loaded}")
    assert set(loaded) == {"download", "upload"}
    for direction, seconds in loaded.items():
        assert seconds > 5 * idle, direction
        assert seconds > 0.010, direction  # a 20 Mbit queue of 1000 packets holds up to 0.6 s
