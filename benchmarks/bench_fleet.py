"""A fleet of probes pushing remote_write into one receiver on this machine.

    python benchmarks/bench_fleet.py                      # 201 pushers into VictoriaMetrics, 60 s
    python benchmarks/bench_fleet.py --receiver prometheus --processes 2 --pushers-per-process 30

What is real: `netprobe.push.Pusher` (scrape, SQLite outbox, protobuf, snappy, aiohttp) and a
real receiver: single-node VictoriaMetrics (Debian's victoria-metrics, the default) or
Prometheus with `--web.enable-remote-write-receiver`, started as tests/test_push_prometheus.py
starts them. What is simulated: each probe is one
Pusher (asyncio task) with its own registry and its own SQLite outbox, many per process, instead
of one whole agent per device; the registry holds `--series` synthetic series named and labelled
like the agent's (a real agent exports about that many); and time is compressed: a push every
`--interval` seconds instead of every 60 s, so the per-push costs measured here are scaled to a
60 s interval in the summary. A separate process with a single Pusher gives the memory a
one-probe process needs. Prints one JSON object (also written to benchmarks/out/fleet-RECEIVER.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge

from netprobe.push.config import PushConfig
from netprobe.push.pusher import Pusher, scrape
from netprobe.push.snappy import compress
from netprobe.push.writerequest import encode_write_request

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from test_push_prometheus import (  # the test suite's launchers, not copies
    Prometheus,
    Receiver,
    VictoriaMetrics,
)

REAL_INTERVAL_SECONDS = 60.0
RECEIVERS: dict[str, type[Receiver]] = {
    "victoria-metrics": VictoriaMetrics,
    "prometheus": Prometheus,
}


def synthetic_registry(series: int, probe: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    rate = Gauge(
        "netprobe_drive_rate_bytes_per_second",
        "Steady drive rate.",
        ["drive", "direction", "phase"],
        registry=registry,
    )
    tests = Counter(
        "netprobe_line_tests", "Line tests.", ["direction", "outcome"], registry=registry
    )
    for i in range(series // 2):
        rate.labels(
            f"drive{i // 4}", ("download", "upload")[i % 2], ("steady", "burst")[i // 2 % 2]
        ).set(1e7 + probe * 1000 + i)
        tests.labels(("download", "upload")[i % 2], f"outcome{i // 2}").inc(i)
    return registry


async def run_pushers(
    url: str,
    count: int,
    first_probe: int,
    interval: float,
    series: int,
    seconds: float,
    workdir: Path,
) -> dict[str, float]:
    pushers = []
    for probe in range(first_probe, first_probe + count):
        config = PushConfig(
            url=url,
            interval=interval,
            external_labels={"site": f"site{probe % 40}", "operator": "bench"},
        )
        registry = synthetic_registry(series, probe)
        pusher = Pusher(
            config,
            registry,
            store_path=str(workdir / f"probe{probe}.sqlite"),
            probe_id=f"probe{probe:05d}",
        )
        registry.register(pusher)
        pushers.append(pusher)
    tasks = [asyncio.ensure_future(p.run()) for p in pushers]
    await asyncio.sleep(seconds)
    sent = sum(
        next(m for m in p.collect() if m.name == "netprobe_push_samples").samples[0].value
        for p in pushers
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"samples_sent": sent}


def worker(args: argparse.Namespace) -> None:
    """One process of the fleet: reports its pushers' results and its own CPU and memory."""
    workdir = Path(tempfile.mkdtemp(prefix="fleet-", dir=args.workdir))
    me = psutil.Process()
    cpu_before = sum(me.cpu_times()[:2])
    result = asyncio.run(
        run_pushers(
            args.url,
            args.pushers,
            args.first_probe,
            args.interval,
            args.series,
            args.seconds,
            workdir,
        )
    )
    result["cpu_seconds"] = sum(me.cpu_times()[:2]) - cpu_before
    result["rss_bytes"] = me.memory_info().rss
    result["outbox_bytes"] = sum(f.stat().st_size for f in workdir.iterdir())
    print(json.dumps(result))


def wire_bytes_per_push(series: int) -> dict[str, int]:
    samples = scrape(
        synthetic_registry(series, 1),
        {
            "job": "netprobe",
            "instance": "probe00001",
            "probe_id": "probe00001",
            "site": "site1",
            "operator": "bench",
        },
    )
    body = encode_write_request(
        [(labels, [(1_764_000_000_000, value)]) for labels, value in samples]
    )
    return {
        "samples": len(samples),
        "protobuf_bytes": len(body),
        "snappy_bytes": len(compress(body)),
    }


def launch(
    args: argparse.Namespace, url: str, pushers: int, first: int, seconds: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", "--url", url, "--pushers", str(pushers), "--first-probe", str(first),
         "--interval", str(args.interval), "--series", str(args.series), "--seconds", str(seconds), "--workdir", args.workdir],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def coordinator(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = tmp
        receiver: Receiver = RECEIVERS[args.receiver](Path(tmp))
        receiver.start()
        assert receiver.process is not None
        server = psutil.Process(receiver.process.pid)
        url = receiver.write_url
        try:
            appended_before = receiver.samples_appended()
            requests_before = receiver.write_requests()
            cpu_before = sum(server.cpu_times()[:2])
            started = time.monotonic()
            workers = [
                launch(
                    args, url, args.pushers_per_process, i * args.pushers_per_process, args.seconds
                )
                for i in range(args.processes)
            ]
            single = launch(args, url, 1, 10**5, args.seconds)
            peak_rss = 0
            while any(w.poll() is None for w in [*workers, single]):
                peak_rss = max(peak_rss, server.memory_info().rss)
                time.sleep(1)
            elapsed = time.monotonic() - started
            receiver_cpu = sum(server.cpu_times()[:2]) - cpu_before
            appended = receiver.samples_appended() - appended_before
            series = receiver.series_count()
            errors = receiver.write_errors()
            requests = receiver.write_requests() - requests_before
        finally:
            receiver.stop()
        reports = [json.loads(w.stdout.read()) for w in workers if w.stdout is not None]
        alone = json.loads(single.stdout.read())  # type: ignore[union-attr]
    pushers = args.processes * args.pushers_per_process + 1
    cpu_per_push = (
        sum(r["cpu_seconds"] for r in reports) / (args.processes * args.pushers_per_process)
    ) / (args.seconds / args.interval)
    wire = wire_bytes_per_push(args.series)
    summary = {
        "simulated": f"{pushers} Pushers: {args.processes} processes x {args.pushers_per_process} asyncio tasks + 1 process with 1; synthetic registry",
        "cpu_count": os.cpu_count(),
        "series_per_probe": wire["samples"],
        "interval_seconds": args.interval,
        "seconds": round(elapsed, 1),
        "samples_sent": sum(r["samples_sent"] for r in reports) + alone["samples_sent"],
        "receiver": {
            "kind": args.receiver,
            "samples_appended": appended,
            "samples_per_second": round(appended / elapsed),
            "requests_per_second": round(requests / elapsed, 1),
            "write_errors": errors,
            "cpu_cores": round(receiver_cpu / elapsed, 3),
            "cpu_seconds_per_million_samples": round(receiver_cpu / max(appended, 1) * 1e6, 2),
            "peak_rss_mib": round(peak_rss / 2**20, 1),
            "series": series,
        },
        "per_probe": {
            "cpu_ms_per_push": round(cpu_per_push * 1000, 2),
            "cpu_share_at_60s_interval": round(cpu_per_push / REAL_INTERVAL_SECONDS, 6),
            "marginal_rss_mib_per_pusher": round(
                (sum(r["rss_bytes"] for r in reports) / args.processes - alone["rss_bytes"])
                / (args.pushers_per_process - 1)
                / 2**20,
                2,
            ),
            "rss_mib_one_pusher_process": round(alone["rss_bytes"] / 2**20, 1),
            "wire_bytes_per_push": wire["snappy_bytes"],
            "protobuf_bytes_per_push": wire["protobuf_bytes"],
            "wire_bytes_per_day_at_60s": wire["snappy_bytes"] * 1440,
        },
    }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"fleet-{args.receiver}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receiver", choices=sorted(RECEIVERS), default="victoria-metrics")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--pushers-per-process", type=int, default=50)
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between pushes (real: 60)"
    )
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pushers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-probe", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        coordinator(args)


if __name__ == "__main__":
    main()
