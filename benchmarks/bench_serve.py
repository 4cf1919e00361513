"""Capacity of `netprobe serve`: honest concurrent tests, next to nginx and iperf3's server.

    nice -n 10 python benchmarks/bench_serve.py [--seconds 5]

Each level (1, 8, 32, 128 concurrent tests) starts that many curl downloads at once, from
127.0.K.1 addresses two to an address (so every client stays inside its share), each for
the same number of seconds. Per server and level it prints the aggregate rate, the server's
CPU seconds per GB sent, the 99th percentile of the time to the first byte, and Jain's
fairness index over the clients' rates (1.0: all equal). The same clients fetch a large static
file from Debian's nginx (the plain bytes-out baseline; skipped when nginx is not installed).
iperf3's server runs one test at a time by design: it gets one reverse test of one stream.
Everything runs on this machine: the clients take CPU from the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import free_port, wait_for_port

LEVELS = (1, 8, 32, 128)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def client_address(index: int) -> str:
    return f"127.0.{index // 2 + 1}.1"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def jain(rates: list[float]) -> float:
    return sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates)) if any(rates) else 0.0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def run_level(url_of: dict[int, str], n_tests: int, seconds: float, pids: list[int]) -> dict:
    """n_tests curl downloads at once for `seconds`; the servers' CPU over the same time."""
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    started = time.monotonic()
    curls = [
        subprocess.Popen(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--interface",
                client_address(i),
                "--max-time",
                str(seconds),
                "-w",
                "%{time_starttransfer} %{size_download} %{time_total} %{http_code}\n",
                url_of[i],
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n_tests)
    ]
    outputs = [curl.communicate()[0].split() for curl in curls]
    wall_seconds = time.monotonic() - started
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    total_bytes = sum(float(out[1]) for out in outputs)
    return {
        "gbit_per_second": total_bytes * 8 / wall_seconds / 1e9,
        "cpu_seconds_per_gb": cpu / (total_bytes / 1e9),
        "p99_first_byte_ms": p99([float(out[0]) * 1000 for out in outputs]),
        "jain": jain([float(out[1]) / float(out[2]) for out in outputs]),
        # curl's 000: no answer within the time (on a machine this busy, a client's turn came
        # too late); anything but 200 counts as a failed test
        "failed": sum(1 for out in outputs if out[3] != "200"),
    }


@contextmanager
def process(argv: list[str], port: int) -> Iterator[int]:
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, process=server)
        yield server.pid
    finally:
        server.terminate()
        server.wait(timeout=20)


@contextmanager
def nginx(folder: Path, port: int) -> Iterator[tuple[list[int], str]]:
    folder.chmod(0o755)  # nginx's workers run as an unprivileged user
    (folder / "www").mkdir()
    big = folder / "www" / "large.bin"
    with big.open("wb") as handle:
        handle.truncate(200 << 30)  # sparse: served from the page cache of zeros
    config = folder / "nginx.conf"
    config.write_text(
        f"""daemon off; worker_processes auto; pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {folder}; proxy_temp_path {folder}; fastcgi_temp_path {folder};
  uwsgi_temp_path {folder}; scgi_temp_path {folder};
  server {{ listen 127.0.0.1:{port}; root {folder}/www; }} }}
"""
    )
    master = subprocess.Popen(["nginx", "-c", str(config), "-p", str(folder)])
    try:
        wait_for_port("127.0.0.1", port, process=master)
        time.sleep(0.5)
        workers = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(master.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        yield [master.pid, *workers], f"http://127.0.0.1:{port}/large.bin"
    finally:
        master.terminate()
        master.wait(timeout=20)


def iperf3_row(seconds: float) -> dict:
    port = free_port()
    with process(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)], port) as pid:
        cpu_before = cpu_seconds(pid)
        done = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-R", "-J", "-t", str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        cpu = cpu_seconds(pid) - cpu_before
    end = json.loads(done.stdout)["end"]
    total_bytes = end["sum_received"]["bytes"]
    return {
        "gbit_per_second": end["sum_received"]["bits_per_second"] / 1e9,
        "cpu_seconds_per_gb": cpu / (total_bytes / 1e9),
        "p99_first_byte_ms": None,
        "jain": 1.0,
        "failed": 0,
    }


def print_row(server: str, n_tests: int, row: dict) -> None:
    first_byte = row["p99_first_byte_ms"]
    print(
        f"| {server} | {n_tests} | {row['gbit_per_second']:.2f} | {row['cpu_seconds_per_gb']:.2f}"
        f" | {'-' if first_byte is None else f'{first_byte:.1f}'} | {row['jain']:.3f}"
        f" | {row['failed']} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per level")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("the benchmark's clients are curl processes: apt-get install curl")
    print(
        "| server | concurrent tests | aggregate Gbit/s | server CPU s/GB | p99 first byte ms "
        "| Jain's index | failed |"
    )
    print("|---|---|---|---|---|---|---|")
    port = free_port()
    serve = [
        sys.executable,
        "-m",
        "netprobe",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--max-tests",
        str(max(LEVELS)),
    ]
    with process(serve, port) as pid:
        for n_tests in LEVELS:
            urls = {
                i: f"http://127.0.0.1:{port}/netprobe/v1/download?bytes=2000000000&test=b{n_tests}x{i}"
                for i in range(n_tests)
            }
            print_row("netprobe serve", n_tests, run_level(urls, n_tests, args.seconds, [pid]))
    if shutil.which("nginx") is None:
        print("| nginx | - | skipped: not installed (apt-get install nginx-light) | | | | |")
    else:
        with (
            tempfile.TemporaryDirectory() as folder,
            nginx(Path(folder), free_port()) as (pids, url),
        ):
            for n_tests in LEVELS:
                urls = dict.fromkeys(range(n_tests), url)
                print_row(
                    "nginx (static file)", n_tests, run_level(urls, n_tests, args.seconds, pids)
                )
    print_row("iperf3 -s (one test at a time)", 1, iperf3_row(args.seconds))


if __name__ == "__main__":
    main()
