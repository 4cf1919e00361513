"""Accuracy and cost on shaped lab links: netprobe vs iperf3 (the reference) vs speedtest-cli
(the peer), side by side in one run, as ratios.

    sudo python benchmarks/bench_accuracy.py [--profiles 10/2,100/20,300/30,1000/100]
                                             [--output benchmarks/out/accuracy.md]

For every profile (down/up Mbit/s) a lab is built (tests/lab.py: htb on a veth pair between the
root namespace and a server namespace running `netprobe serve` and `iperf3 -s`). htb passes the
senders' GSO bursts whole, so bytes arrive in lumps of up to 64 kB; a profile ending in
":frames" (`10/2:frames`) splits them, so frames arrive one by one as from a modem. Each tool runs
as a whole process, one direction at a time, as a user would run it:

- iperf3 `-P 4 -t 6 -O 2 -J` (receiver figure, 2 s omitted);
- `netprobe speed --json` with its defaults (adaptive streams, warm-up and stop);
- speedtest-cli (the real package, its CLI code) against netprobe serve's legacy HTTP routes,
  with its configuration download answered locally (`python -m netprobe.measure.ookla`).

One row per link, direction and tool: its rate, its error against iperf3 and against the link's
payload ceiling (the htb rate times 1448/1514: full-size TCP segments with timestamps in
Ethernet frames; long runs of either tool read within 0.3 % of it), the bytes on the wire
(both directions of the probe's interface: warm-up, window and whatever the stop left in
flight) and their share of speedtest-cli's, the wall-clock seconds, the client's CPU seconds
(user + system) per GB on the wire for the whole process (interpreter start-up included) and
while the test itself ran (iperf3's own cpu_utilization over its 8 s; netprobe's
`cpu_seconds` from its result; speedtest-cli has no such figure), and that in-test CPU for the
whole test: what a probe pays per measurement, however few bytes it moves.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import Lab, lab_unavailable

PROFILES = "10/2,100/20,300/30,1000/100"
# TCP payload per Ethernet frame as htb counts it (1514 bytes, MSS 1448 with timestamps).
PAYLOAD_SHARE = 1448 / 1514


@dataclass
class Run:
    tool: str
    bytes_per_second: float
    cpu_seconds: float
    wire_bytes: int
    seconds: float
    in_test_cpu_seconds: float | None = None

    @property
    def mbit(self) -> float:
        return self.bytes_per_second * 8 / 1e6

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu_seconds / (self.wire_bytes / 1e9) if self.wire_bytes else float("nan")

    @property
    def in_test_cpu_ms(self) -> float:
        return float("nan") if self.in_test_cpu_seconds is None else self.in_test_cpu_seconds * 1e3

    @property
    def in_test_cpu_per_gb(self) -> float:
        if self.in_test_cpu_seconds is None or not self.wire_bytes:
            return float("nan")
        return self.in_test_cpu_seconds / (self.wire_bytes / 1e9)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(lab: Lab, tool: str, argv: list[str], rate_of, in_test_cpu_of=None) -> Run:
    """Run a tool; its rate and in-test CPU come from its JSON, the rest from the OS."""
    cpu, wire, started = children_cpu(), lab.interface_bytes(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    seconds = time.monotonic() - started
    time.sleep(2.0)  # what the stop left queued still crosses the link: count it
    cpu, wire = children_cpu() - cpu, lab.interface_bytes() - wire
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{tool} failed: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout)
    in_test = in_test_cpu_of(report) if in_test_cpu_of else None
    return Run(tool, rate_of(report), cpu, wire, seconds, in_test)


def measure(lab: Lab, url: str, direction: str) -> list[Run]:
    down = direction == "download"
    iperf3 = ["iperf3", "-c", lab.server_ip, "-J", "-t", "6", "-O", "2", "-P", "4"]
    iperf3_seconds = 6 + 2  # the test plus the omitted seconds
    netprobe = [
        sys.executable,
        "-m",
        "netprobe",
        "speed",
        "--server",
        url,
        "--json",
        "--direction",
        "down" if down else "up",
    ]
    speedtest = [
        sys.executable,
        "-m",
        "netprobe.measure.ookla",
        url,
        "--",
        "--mini",
        url + "/",
        "--json",
        "--no-upload" if down else "--no-download",
    ]
    return [
        timed(
            lab,
            "iperf3",
            iperf3 + (["-R"] if down else []),
            lambda r: r["end"]["sum_received"]["bits_per_second"] / 8,
            lambda r: r["end"]["cpu_utilization_percent"]["host_total"] / 100 * iperf3_seconds,
        ),
        timed(
            lab,
            "netprobe",
            netprobe,
            lambda r: r[direction]["bytes_per_second"],
            lambda r: r[direction]["cpu_seconds"],
        ),
        timed(lab, "speedtest-cli", speedtest, lambda r: r[direction] / 8),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=PROFILES)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/out/accuracy.md"))
    args = parser.parse_args()
    why = lab_unavailable()
    if why:
        sys.exit(f"cannot run: {why}")
    rows = [
        "| link (Mbit/s) | direction | tool | Mbit/s | error vs iperf3 | vs ceiling "
        "| MB on the wire | share of speedtest-cli's bytes | seconds | CPU s/GB process "
        "| CPU s/GB in test | CPU ms in test |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for profile in args.profiles.split(","):
        rates, _, kind = profile.partition(":")
        if kind not in ("", "frames"):
            sys.exit(f"unknown link kind {kind!r} in --profiles {profile}: only ':frames'")
        down, up = rates.split("/")
        with Lab(f"{down}Mbit", f"{up}Mbit", frames=kind == "frames") as lab:
            url = lab.start_netprobe_server()
            lab.start_iperf3_server()
            for direction in ("download", "upload"):
                runs = measure(lab, url, direction)
                iperf3, speedtest = runs[0], runs[2]
                ceiling_mbit = float(down if direction == "download" else up) * PAYLOAD_SHARE
                for run in runs:
                    row = (
                        f"| {profile} | {direction} | {run.tool} | {run.mbit:.2f} "
                        f"| {run.mbit / iperf3.mbit - 1:+.2%} | {run.mbit / ceiling_mbit - 1:+.2%} "
                        f"| {run.wire_bytes / 1e6:.1f} "
                        f"| {run.wire_bytes / speedtest.wire_bytes:.0%} | {run.seconds:.1f} "
                        f"| {run.cpu_per_gb:.2f} | {run.in_test_cpu_per_gb:.2f} "
                        f"| {run.in_test_cpu_ms:.0f} |"
                    )
                    print(row, flush=True)
                    rows.append(row)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(rows) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
