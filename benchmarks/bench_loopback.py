"""The client is not the bottleneck: netprobe on loopback, next to iperf3 on loopback.

    python benchmarks/bench_loopback.py

Starts `netprobe serve` and `iperf3 -s` on 127.0.0.1 and measures both directions with each.
netprobe's server and client are both Python processes here, on the same cores as each other.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import free_port


def wait(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


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
        wait(np_port)
        wait(ip_port)
        print("| direction | netprobe Gbit/s | iperf3 -P 4 Gbit/s |")
        print("|---|---|---|")
        for direction, flag in (("download", "down"), ("upload", "up")):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "netprobe",
                    "speed",
                    "--server",
                    f"http://127.0.0.1:{np_port}",
                    "--direction",
                    flag,
                    "--json",
                    "--duration",
                    "4",
                    "--max-bytes",
                    "200GB",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            netprobe = json.loads(done.stdout)[direction]["bytes_per_second"] * 8 / 1e9
            report = json.loads(
                subprocess.run(
                    [
                        "iperf3",
                        "-c",
                        "127.0.0.1",
                        "-p",
                        str(ip_port),
                        "-J",
                        "-t",
                        "5",
                        "-O",
                        "1",
                        "-P",
                        "4",
                        *(["-R"] if direction == "download" else []),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            iperf3 = report["end"]["sum_received"]["bits_per_second"] / 1e9
            print(f"| {direction} | {netprobe:.1f} | {iperf3:.1f} |", flush=True)
    finally:
        for server in servers:
            server.kill()


if __name__ == "__main__":
    main()
