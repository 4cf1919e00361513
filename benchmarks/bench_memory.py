"""The idle agent's resident memory: after start, after its first test, after a day of scrapes.

    python benchmarks/bench_memory.py                 # 5760 scrapes: 24 h at one per 15 s
    python benchmarks/bench_memory.py --scrapes 500

Starts `netprobe serve` on loopback and `netprobe agent` (no embedded server) whose first test
is due a few seconds after start, with the default measurement. Reads the agent's RSS from
/proc (psutil) once it serves, once the first test is stored, and after the scrapes a day of
Prometheus polling would make, sent back to back. Then the import cost of the agent, of
each heavy dependency it loads, and of those it no longer loads when idle, each alone in a
fresh interpreter. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agentproc import AgentProcess, stored, wait_for, write_config
from lab import free_port, wait_for_port

# What weighs, one fresh interpreter each, and whether the idle agent loads it: aiohttp only
# with push, drives, ndt7 or the embedded server; typer's parser (which converts options with
# pydantic) only in `netprobe agent`'s first moment, before it becomes `python -m netprobe.agent`.
IMPORTS = [
    ("netprobe.agent.main", "yes"),
    ("netprobe.exporter", "yes"),
    ("prometheus_client", "yes"),
    ("cryptography.hazmat.primitives.asymmetric.ed25519", "yes"),
    ("yaml", "yes"),
    ("aiohttp.web", "no"),
    ("typer._adapters", "no"),
]


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def import_cost_mib(module: str) -> float:
    """RSS of an interpreter that imported `module`, minus a bare interpreter's.

    Read from /proc/self/status: ru_maxrss survives exec and would report the parent's size.
    """
    probe = "import psutil; {}; print(psutil.Process().memory_info().rss)"
    bare, loaded = (
        int(subprocess.check_output([sys.executable, "-c", probe.format(stmt)], text=True))
        for stmt in ("pass", f"import {module}")
    )
    return (loaded - bare) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=24 * 3600 // 15)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[tuple[str, float]] = []
    try:
        wait_for_port("127.0.0.1", port)
        with tempfile.TemporaryDirectory() as directory:
            config = write_config(
                Path(directory),
                servers=[{"url": f"http://127.0.0.1:{port}"}],
                schedule={"startup_delay": "5s"},
                measurement={"directions": ["download", "upload"]},
            )
            agent = AgentProcess(config)
            try:
                time.sleep(1.0)
                rows.append(("after start (serving /metrics)", rss_mib(agent.process.pid)))
                db = Path(directory) / "results.db"
                wait_for("the first test", lambda: stored(db), timeout_seconds=180)
                time.sleep(1.0)
                rows.append(("after the first test", rss_mib(agent.process.pid)))
                for _ in range(args.scrapes):
                    agent.get("/metrics")
                rows.append((f"after {args.scrapes} scrapes", rss_mib(agent.process.pid)))
            finally:
                agent.stop()
    finally:
        server.kill()
        server.wait()
    print("| agent state | RSS MiB |\n|---|---|")
    for state, mib in rows:
        print(f"| {state} | {mib:.1f} |")
    print("\n| import (alone, fresh interpreter) | + MiB | idle agent loads it |\n|---|---|---|")
    for module, loaded in IMPORTS:
        print(f"| {module} | {import_cost_mib(module):.1f} | {loaded} |")


if __name__ == "__main__":
    main()
