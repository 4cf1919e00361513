"""Why the engine has its own HTTP client: CPU per GB received, aiohttp's client vs ours.

    python benchmarks/bench_client.py [--gigabytes 4] [--streams 4]

Starts `netprobe serve` on loopback in its own process, then downloads the same bytes over the
same number of parallel connections twice in this process: once with aiohttp's ClientSession
(reading with `content.readany()`, the cheapest way it offers) and once with
netprobe.measure.http.Connection (`recv_into` one reusable buffer). Prints the client's CPU
seconds per GB for each, alternating the two three times so drift shows.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from netprobe.measure.http import Connection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import free_port


async def with_aiohttp(url: str, per_stream: int, streams: int) -> int:
    async def one(session: aiohttp.ClientSession, k: int) -> int:
        got = 0
        async with session.get(f"{url}/netprobe/v1/download?bytes={per_stream}&test=a{k}") as r:
            while chunk := await r.content.readany():
                got += len(chunk)
        return got

    async with aiohttp.ClientSession() as session:
        return sum(await asyncio.gather(*(one(session, k) for k in range(streams))))


async def with_netprobe(url: str, per_stream: int, streams: int) -> int:
    total = 0

    def count(n: int) -> None:
        nonlocal total
        total += n

    async def one(k: int) -> None:
        conn = await Connection.open(url, timeout_seconds=5)
        await conn.download(f"/netprobe/v1/download?bytes={per_stream}&test=n{k}", count)
        conn.abort()

    await asyncio.gather(*(one(k) for k in range(streams)))
    return total


def cpu_per_gb(client, url: str, total_bytes: int, streams: int) -> float:
    start = time.process_time()
    received = asyncio.run(client(url, total_bytes // streams, streams))
    return (time.process_time() - start) / (received / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        total = int(args.gigabytes * 1e9)
        print("| round | aiohttp client CPU s/GB | netprobe client CPU s/GB | ratio |")
        print("|---|---|---|---|")
        for round_ in range(1, 4):
            ours = cpu_per_gb(with_netprobe, url, total, args.streams)
            theirs = cpu_per_gb(with_aiohttp, url, total, args.streams)
            print(f"| {round_} | {theirs:.3f} | {ours:.3f} | {theirs / ours:.2f}x |", flush=True)
    finally:
        server.kill()


if __name__ == "__main__":
    main()
