"""Raspberry Pi class: the client held to a CPU quota still measures a 1 Gbit link right.

    sudo python benchmarks/bench_pi_quota.py [--rate 1000Mbit] [--quota 0.10]

The `netprobe speed` process runs in a cgroup whose CPU quota is a share of one core (10 % by
default: cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`); iperf3, unconstrained, measures the
same lab link as the reference. Prints both figures, the error, and how often the kernel
throttled the client (proof the quota bit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import Lab, lab_unavailable

PERIOD_US = 100_000


def make_cgroup(quota: float) -> tuple[Path, Path]:
    """A cgroup limited to `quota` of one core; returns (procs file, stat file)."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        group = Path("/sys/fs/cgroup/netprobe-bench")
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{int(quota * PERIOD_US)} {PERIOD_US}")
    else:
        group = Path("/sys/fs/cgroup/cpu/netprobe-bench")
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(quota * PERIOD_US)))
    return group / "cgroup.procs", group / "cpu.stat"


def throttled(stat: Path) -> int:
    fields = dict(line.split() for line in stat.read_text().splitlines())
    return int(fields.get("nr_throttled", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="1000Mbit")
    parser.add_argument("--quota", type=float, default=0.10)
    args = parser.parse_args()
    why = lab_unavailable()
    if why:
        sys.exit(f"cannot run: {why}")
    procs, stat = make_cgroup(args.quota)
    print(
        "| link | direction | CPU quota | iperf3 Mbit/s | netprobe Mbit/s | error | throttled periods |"
    )
    print("|---|---|---|---|---|---|---|")
    with Lab(args.rate, args.rate) as lab:
        url = lab.start_netprobe_server()
        lab.start_iperf3_server()
        for direction, flag in (("download", "down"), ("upload", "up")):
            before = throttled(stat)
            command = (
                f"echo $$ > {procs}; exec {sys.executable} -m netprobe speed --server {url}"
                f" --direction {flag} --json --time-limit 60"
            )
            done = subprocess.run(
                ["sh", "-c", command], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                sys.exit(f"netprobe failed: {done.stderr.strip()}")
            measured = json.loads(done.stdout)[direction]["bytes_per_second"] * 8 / 1e6
            reference = lab.iperf3(reverse=direction == "download")["bytes_per_second"] * 8 / 1e6
            print(
                f"| {args.rate} | {direction} | {args.quota:.0%} of a core | {reference:.1f} "
                f"| {measured:.1f} | {measured / reference - 1:+.2%} "
                f"| {throttled(stat) - before} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
