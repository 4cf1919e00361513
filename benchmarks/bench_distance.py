"""Accuracy and cost at distance: netprobe vs iperf3 (the reference) vs speedtest-cli on lab links
with a round trip and loss (tests/delayline.c), side by side in one run, as ratios; and the
delay line's own figures.

    sudo python benchmarks/bench_distance.py [--profiles 50/20,100/50,300/30,20/150,100/30/0.5]
                                             [--output benchmarks/out/distance.md]

A profile is `rate Mbit/s / added round trip ms [/ loss % each way]`, the same rate both ways.
Each tool runs as a whole process, one direction at a time, as a user would run it:

- iperf3 `-P 4 -t 6 -O 2 -J` (receiver figure, slow start omitted);
- `netprobe speed --json` with its defaults, against `netprobe serve`;
- speedtest-cli (the real package) against netprobe serve's legacy HTTP routes, its
  configuration answered locally (`python -m netprobe.measure.ookla`).

Columns: each tool's rate, its error against iperf3, the bytes each moved on the wire (both
directions of the probe's interface), the wall-clock seconds each took, and netprobe's idle and
loaded latency (the added round trip is the floor). The delay line's
section: the most it carries (iperf3 -P 4 on an unshaped 4 ms link), its CPU at 100 Mbit/s and
the packets it released late (more than 1 ms after due) while doing so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import Lab, lab_unavailable

PROFILES = "50/20,100/50,300/30,20/150,100/30/0.5"


@dataclass
class Run:
    tool: str
    bytes_per_second: float
    wire_bytes: int
    seconds: float
    report: dict[str, Any]

    @property
    def mbit(self) -> float:
        return self.bytes_per_second * 8 / 1e6


def timed(lab: Lab, tool: str, argv: list[str], rate_of) -> Run:
    """Run a tool; its rate comes from its JSON, bytes and seconds from the OS."""
    lab.wait_for_iperf3_idle()
    wire, start = lab.interface_bytes(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    seconds, wire = time.monotonic() - start, lab.interface_bytes() - wire
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{tool} failed: {(done.stdout + done.stderr).strip()[-300:]}")
    report = json.loads(done.stdout)
    return Run(tool, rate_of(report), wire, seconds, report)


def measure(lab: Lab, url: str, direction: str) -> list[Run]:
    down = direction == "download"
    iperf3 = ["iperf3", "-c", lab.server_ip, "-J", "-t", "6", "-O", "2", "-P", "4"]
    netprobe = [sys.executable, "-m", "netprobe", "speed", "--server", url, "--json"]
    netprobe += ["--direction", "down" if down else "up"]
    speedtest = [sys.executable, "-m", "netprobe.measure.ookla", url, "--", "--mini", url + "/"]
    speedtest += ["--json", "--no-upload" if down else "--no-download"]
    return [
        timed(
            lab,
            "iperf3",
            iperf3 + (["-R"] if down else []),
            lambda r: r["end"]["sum_received"]["bits_per_second"] / 8,
        ),
        timed(lab, "netprobe", netprobe, lambda r: r[direction]["bytes_per_second"]),
        timed(lab, "speedtest-cli", speedtest, lambda r: r[direction] / 8),
    ]


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def delayline_rows() -> list[str]:
    rows = ["| delay line | download | upload |", "|---|---|---|"]
    with Lab("5Gbit", rtt_ms=4) as lab:
        lab.start_iperf3_server()
        most = [lab.iperf3(reverse=r, seconds=6, omit=2)["bytes_per_second"] for r in (True, False)]
        rows.append(f"| most carried, Mbit/s | {most[0] * 8e-6:.0f} | {most[1] * 8e-6:.0f} |")
    with Lab("100Mbit", rtt_ms=20) as lab:
        lab.start_iperf3_server()
        assert lab.delayline is not None
        cpu, late = [], []
        for reverse in (True, False):
            before, start = process_cpu_seconds(lab.delayline.pid), time.monotonic()
            lab.iperf3(reverse=reverse, seconds=6, omit=2)
            cpu.append(
                (process_cpu_seconds(lab.delayline.pid) - before) / (time.monotonic() - start)
            )
            stats = lab.delay_stats()["down" if reverse else "up"]
            late.append(f"{stats['late']} of {stats['packets']}")
        rows.append(f"| CPU at 100 Mbit/s, % of a core | {cpu[0]:.0%} | {cpu[1]:.0%} |")
        rows.append(f"| late packets at 100 Mbit/s (cumulative) | {late[0]} | {late[1]} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=PROFILES)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/out/distance.md"))
    parser.add_argument("--no-delayline", action="store_true", help="skip the delay line's figures")
    args = parser.parse_args()
    why = lab_unavailable()
    if why:
        sys.exit(f"cannot run: {why}")
    rows = [] if args.no_delayline else [*delayline_rows(), ""]
    for row in rows:
        print(row, flush=True)
    header = [
        "| link | direction | iperf3 Mbit/s | netprobe Mbit/s (error) "
        "| speedtest-cli Mbit/s (error) | MB moved iperf3 / netprobe / speedtest-cli "
        "| seconds iperf3 / netprobe / speedtest-cli | netprobe latency idle / loaded ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in header:
        print(row, flush=True)
    rows += header
    for profile in args.profiles.split(","):
        rate, rtt, *loss = profile.split("/")
        loss_ratio = float(loss[0]) / 100 if loss else 0.0
        name = f"{rate} Mbit/s, {rtt} ms" + (f", {loss[0]} % loss" if loss else "")
        with Lab(f"{rate}Mbit", rtt_ms=float(rtt), loss=loss_ratio) as lab:
            url = lab.start_netprobe_server()
            lab.start_iperf3_server()
            for direction in ("download", "upload"):
                iperf3, netprobe, speedtest = measure(lab, url, direction)
                latency = netprobe.report["latency"]
                idle_ms = latency["idle_seconds"] * 1e3
                loaded_ms = latency["loaded_seconds"][direction] * 1e3
                row = (
                    f"| {name} | {direction} | {iperf3.mbit:.1f} "
                    f"| {netprobe.mbit:.1f} ({netprobe.mbit / iperf3.mbit - 1:+.1%}) "
                    f"| {speedtest.mbit:.1f} ({speedtest.mbit / iperf3.mbit - 1:+.1%}) "
                    f"| {iperf3.wire_bytes / 1e6:.0f} / {netprobe.wire_bytes / 1e6:.0f} / "
                    f"{speedtest.wire_bytes / 1e6:.0f} "
                    f"| {iperf3.seconds:.1f} / {netprobe.seconds:.1f} / {speedtest.seconds:.1f} "
                    f"| {idle_ms:.1f} / {loaded_ms:.1f} |"
                )
                print(row, flush=True)
                rows.append(row)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(rows) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
