"""The agent's footprint between tests: resident memory and CPU while it idles and is scraped.

    python benchmarks/bench_idle.py              # one minute, a scrape every 15 s
    python benchmarks/bench_idle.py --seconds 20

Starts `netprobe agent` with a configuration whose first test is an hour away (exporter,
store, compliance verdicts and schedule running, as on a probe between tests), lets it settle, then reads its
CPU time and RSS from /proc through psutil over the window while Prometheus-like scrapes hit
/metrics. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import free_port

CONFIG = """
probe: {{id: bench, interface: lo}}
contract: {{download: 100Mbit, upload: 20Mbit}}
servers: [{{url: "http://127.0.0.1:9"}}]
schedule: {{mean_interval: 1h, min_interval: 1h, max_interval: 1h, startup_delay: 1h}}
exporter: {{listen: "127.0.0.1:{port}"}}
store: {{path: results.db}}
"""


def scrape(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return len(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "agent.yml"
        config.write_text(CONFIG.format(port=port))
        started = time.monotonic()
        agent = subprocess.Popen(
            [sys.executable, "-m", "netprobe", "agent", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    scrape_bytes = scrape(port)
                    break
                except OSError:
                    time.sleep(0.05)
            ready_seconds = time.monotonic() - started
            time.sleep(2.0)  # let start-up work finish before the window opens
            process = psutil.Process(agent.pid)
            cpu_before, t_before = process.cpu_times(), time.monotonic()
            deadline = t_before + args.seconds
            while (now := time.monotonic()) < deadline:
                scrape(port)
                time.sleep(min(args.scrape_interval, deadline - now))
            cpu_after, t_after = process.cpu_times(), time.monotonic()
            memory = process.memory_info()
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    busy = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    print(
        json.dumps(
            {
                "window_seconds": round(t_after - t_before, 1),
                "cpu_percent_of_one_core": round(100 * busy / (t_after - t_before), 3),
                "rss_mib": round(memory.rss / 2**20, 1),
                "start_to_first_scrape_seconds": round(ready_seconds, 2),
                "metrics_page_bytes": scrape_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
