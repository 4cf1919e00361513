"""The defaults on the fastest line there is: netprobe on loopback, next to iperf3 on loopback.

    python benchmarks/bench_loopback.py

Starts `netprobe serve` and `iperf3 -s` on 127.0.0.1 and measures both directions with each:
`netprobe speed --json` with its defaults (no --duration, no --max-bytes: the 3 GB budget) and
`iperf3 -P 4 -t 5 -O 1`. netprobe's server and client are both Python processes here, on the
same cores as each other. Columns: the rate, whether the defaults gave a valid figure, the bytes
moved, the seconds the direction took and the client's CPU seconds per GB while it ran (netprobe's
`cpu_seconds`; iperf3's own cpu_utilization over its 6 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import free_port, wait_for_port


def netprobe(port: int, direction: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "netprobe",
            "speed",
            "--server",
            f"http://127.0.0.1:{port}",
            "--direction",
            "down" if direction == "download" else "up",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads(done.stdout)[direction]
    moved = result["total_bytes"]
    if not result["ok"]:
        return f"| netprobe | — | no: {result['error']} | {moved / 1e9:.2f} | — | — |"
    return (
        f"| netprobe | {result['bytes_per_second'] * 8 / 1e9:.2f} | yes "
        f"| {moved / 1e9:.2f} | {result['duration_seconds']:.1f} "
        f"| {result['cpu_seconds'] / (moved / 1e9):.3f} |"
    )


def iperf3(port: int, direction: str) -> str:
    seconds, omit = 5, 1
    report = json.loads(
        subprocess.run(
            [
                "iperf3",
                "-c",
                "127.0.0.1",
                "-p",
                str(port),
                "-J",
                "-t",
                str(seconds),
                "-O",
                str(omit),
                "-P",
                "4",
                *(["-R"] if direction == "download" else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    end = report["end"]
    moved = end["sum_received"]["bytes"] / seconds * (seconds + omit)
    cpu = end["cpu_utilization_percent"]["host_total"] / 100 * (seconds + omit)
    return (
        f"| iperf3 -P 4 | {end['sum_received']['bits_per_second'] / 1e9:.2f} | yes "
        f"| {moved / 1e9:.2f} | {seconds + omit:.1f} | {cpu / (moved / 1e9):.3f} |"
    )


def main() -> None:
    np_port, ip_port = free_port(), free_port()
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netprobe",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(np_port),
            ],
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(ip_port)], stdout=subprocess.DEVNULL
        ),
    ]
    try:
        wait_for_port("127.0.0.1", np_port)
        wait_for_port("127.0.0.1", ip_port)
        for direction in ("download", "upload"):
            print(f"\n{direction}\n")
            print("| tool | Gbit/s | valid | GB moved | seconds | client CPU s/GB |")
            print("|---|---|---|---|---|---|")
            print(netprobe(np_port, direction), flush=True)
            print(iperf3(ip_port, direction), flush=True)
    finally:
        for server in servers:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
