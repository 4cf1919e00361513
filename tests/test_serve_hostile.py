"""`netprobe serve` under hostile clients: one test per attack pattern (tests/attackers.py).

One server runs for the whole module in a lab namespace behind a 50 Mbit/s link, with a
descriptor limit of 128 and short timeouts. The attacker runs inside the server's namespace
and comes from 127.0.0.x over its loopback; the honest client measures from the other end of
the shaped link. During each attack the honest native test must agree with iperf3 within 2 %,
the server must stay under RSS_BOUND_BYTES and its descriptor limit, its log must stay small,
and the attack must have met the defence meant for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lab import Lab, lab_unavailable, wait_for_port
from prometheus_client.parser import text_string_to_metric_families

from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import backend_for, measure_line

ATTACKERS = str(Path(__file__).with_name("attackers.py"))
PORT = 8080
METRICS_PORT = 9102
DESCRIPTOR_LIMIT = 128
RSS_BOUND_BYTES = 112 << 20
LOG_GROWTH_BOUND_BYTES = 4096
# Short enough that each of its requests ends well inside the server's 10 s cap.
HONEST = EngineOptions(streams=4, duration_seconds=3, warmup_max_seconds=2)


@dataclass
class HostileLab:
    lab: Lab
    server_pid: int
    reference: dict[str, float]
    server_log: Path
    folder: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://{self.lab.server_ip}:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def total(self, name: str, **labels: str) -> float:
        return sum(
            value
            for (sample, sample_labels), value in self.metrics().items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        )

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.server_pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.server_pid}/fd"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLab]:
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("hostile")
    with Lab(down="50Mbit", up="50Mbit") as lab:
        server_log = folder / "server.log"
        server = lab.spawn(
            "prlimit",
            f"--nofile={DESCRIPTOR_LIMIT}:{DESCRIPTOR_LIMIT}",
            sys.executable,
            "-m",
            "netprobe",
            "serve",
            "--host=0.0.0.0",
            f"--port={PORT}",
            "--max-request-seconds=10",
            "--header-timeout=3",
            "--idle-timeout=3",
            f"--access-log={folder / 'access.log'}",
            f"--metrics=0.0.0.0:{METRICS_PORT}",
            log=server_log,
        )
        wait_for_port(lab.server_ip, PORT, process=server)
        wait_for_port(lab.server_ip, METRICS_PORT, process=server)
        lab.start_iperf3_server()
        reference = {
            "download": lab.iperf3(reverse=True, seconds=4, omit=1)["bytes_per_second"],
            "upload": lab.iperf3(reverse=False, seconds=4, omit=1)["bytes_per_second"],
        }
        yield HostileLab(lab, server.pid, reference, server_log, folder)


async def measure_while(
    hostile: HostileLab, pattern: str, until: Callable[[], bool] = lambda: True
) -> dict[str, int]:
    """Run the honest test during the attack, which goes on `until` a condition holds (at
    most 15 s more); checks the test and the server; returns the attacker's tally."""
    attacker_log = hostile.folder / f"{pattern}.log"
    log_before = hostile.server_log.stat().st_size
    attacker = hostile.lab.spawn(
        sys.executable, ATTACKERS, pattern, "127.0.0.1", str(PORT), log=attacker_log
    )
    try:
        await asyncio.sleep(2.0)  # let the attack take hold
        result = await measure_line(
            backend_for("native", hostile.lab.url(PORT)), ["download", "upload"], HONEST
        )
        rss_bytes, descriptors = hostile.rss_bytes(), hostile.descriptors()
        for _ in range(60):
            if until():
                break
            await asyncio.sleep(0.25)
    finally:
        attacker.kill()
        attacker.wait()
    for measured in result.directions():
        assert measured.ok, f"{pattern}: {measured.direction}: {measured.error}"
        expected = hostile.reference[measured.direction]
        ratio = measured.bytes_per_second / expected  # type: ignore[operator]
        print(f"{pattern} {measured.direction}: {ratio:.4f} of iperf3, RSS {rss_bytes >> 20} MiB")
        assert ratio == pytest.approx(1.0, abs=0.02), (pattern, measured.direction)
    assert rss_bytes < RSS_BOUND_BYTES, f"RSS {rss_bytes >> 20} MiB"
    assert descriptors <= DESCRIPTOR_LIMIT
    with hostile.server_log.open() as log:
        log.seek(log_before)
        grown = log.read()
    assert len(grown) < LOG_GROWTH_BOUND_BYTES and "Traceback" not in grown, grown[-2000:]
    lines = attacker_log.read_text().splitlines()
    tally: dict[str, int] = json.loads(lines[-1]) if lines else {}
    assert tally.get("opened", 0) > 0, f"the {pattern} attack never connected"
    return tally


async def test_slowloris_headers_are_cut_at_the_header_timeout(hostile: HostileLab) -> None:
    tally = await measure_while(hostile, "slowloris")
    assert tally["closed"] >= 20
    assert hostile.total("netprobe_serve_refusals_total", reason="header_timeout") >= 20


async def test_parked_trickling_uploads_end_at_the_time_cap(hostile: HostileLab) -> None:
    def cut() -> float:
        return hostile.total("netprobe_serve_tests_total", direction="upload", outcome="timeout")

    before = cut()
    await measure_while(hostile, "trickle", until=lambda: cut() - before >= 4)
    assert cut() - before >= 4


async def test_non_reading_downloads_and_websockets_end_at_their_caps(
    hostile: HostileLab,
) -> None:
    def cut(protocol: str) -> float:
        return hostile.total(
            "netprobe_serve_tests_total", protocol=protocol, direction="download", outcome="timeout"
        )

    before = {protocol: cut(protocol) for protocol in ("ndt7", "speedtest")}
    # the time cap is 10 s; ndt7's is its 10 s test plus 2 s to close
    await measure_while(
        hostile, "nonreading", until=lambda: all(cut(p) - before[p] >= 6 for p in before)
    )
    assert cut("ndt7") - before["ndt7"] >= 6  # of the attacker's 8 websockets
    assert cut("speedtest") - before["speedtest"] >= 6


async def test_many_connections_from_one_address_get_503_beyond_its_share(
    hostile: HostileLab,
) -> None:
    tally = await measure_while(hostile, "many")
    assert tally["refused"] > 100
    refused = hostile.total("netprobe_serve_refusals_total", reason="connections_per_address")
    assert refused > 100


async def test_oversized_headers_get_4xx(hostile: HostileLab) -> None:
    tally = await measure_while(hostile, "oversized")
    refused = sum(n for key, n in tally.items() if key.startswith(("status_400", "status_431")))
    assert refused >= 20 and "status_200" not in tally


async def test_ndt7_compression_bombs_are_refused_without_inflating(hostile: HostileLab) -> None:
    tally = await measure_while(hostile, "bomb")
    assert tally["closed"] >= 16  # a deflated or oversized message ends the upload at once


async def test_half_open_flood_under_a_small_descriptor_limit(hostile: HostileLab) -> None:
    tally = await measure_while(hostile, "halfopen")
    assert tally["refused"] > 100
    assert hostile.total("netprobe_serve_refusals_total", reason="connections_per_prefix") > 100
    assert "Traceback" not in hostile.server_log.read_text()
