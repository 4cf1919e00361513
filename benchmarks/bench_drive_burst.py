"""Drives that burst, then throttle: the steady rate `netprobe drive` reports, against the truth.

    python benchmarks/bench_drive_burst.py [--repeat 3]

A stand-in drive (tests/drive_standins.py, its own process, paced by bytes and time) serves a
burst at 20× the steady rate, of a length or a size the probe is not told, then the steady
rate. Each case runs the ad-hoc CLI with its defaults (`netprobe drive --url … --kind http
--json`: steady state held 10 s, bursts waited out up to 25 s) and compares its figures with
the stand-in's. Beside it, from the same run's per-second bytes, the old fixed windows
(10 s download, the first 2 s counted as burst) show what a fixed burst window reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

STEADY_BYTES_PER_SECOND = 500_000.0
BURST_BYTES_PER_SECOND = 20 * STEADY_BYTES_PER_SECOND
FILE_BYTES = 1_000_000_000
OLD_DURATION_SECONDS, OLD_BURST_SECONDS = 10, 2


@dataclass(frozen=True)
class Case:
    name: str
    burst_seconds: float = 0.0
    burst_bytes: int | None = None

    @property
    def true_burst_bytes(self) -> float:
        if self.burst_bytes is not None:
            return self.burst_bytes
        return self.burst_seconds * BURST_BYTES_PER_SECOND

    def standin_flags(self) -> list[str]:
        if self.burst_bytes is not None:
            return [
                "--burst-rate",
                str(BURST_BYTES_PER_SECOND),
                "--burst-bytes",
                str(self.burst_bytes),
            ]
        if self.burst_seconds:
            return [
                "--burst-rate",
                str(BURST_BYTES_PER_SECOND),
                "--burst-seconds",
                str(self.burst_seconds),
            ]
        return []


CASES = [
    Case("1 s burst", burst_seconds=1),
    Case("5 s burst", burst_seconds=5),
    Case("20 s burst", burst_seconds=20),
    Case("20 MB burst", burst_bytes=20_000_000),
    Case("100 MB burst", burst_bytes=100_000_000),
    Case("no burst"),
]


def probe(case: Case) -> dict[str, object]:
    port = free_port()
    standin = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "drive_standins.py"),
            "127.0.0.1",
            str(port),
            str(STEADY_BYTES_PER_SECOND),
            "--file-bytes",
            str(FILE_BYTES),
            *case.standin_flags(),
        ]
    )
    try:
        wait_for_port("127.0.0.1", port)
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "netprobe",
                "drive",
                "--url",
                f"http://127.0.0.1:{port}/burst/file.bin",
                "--kind",
                "http",
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"{case.name}: netprobe drive failed: {done.stderr.strip()}")
        wall_seconds = time.monotonic() - started
    finally:
        standin.terminate()
        standin.wait()
    download = json.loads(done.stdout)["download"]
    download["wall_seconds"] = wall_seconds
    return download


def old_fixed_window(per_second_bytes: list[int]) -> float:
    """What the fixed windows made of the same bytes: seconds 2-10 after the first byte."""
    window = per_second_bytes[OLD_BURST_SECONDS:OLD_DURATION_SECONDS]
    return sum(window) / len(window)


def error(measured: float | None, true: float) -> float:
    return float("nan") if measured is None or true == 0 else measured / true - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"steady {STEADY_BYTES_PER_SECOND / 1e3:.0f} kB/s, bursts at 20× "
        f"({BURST_BYTES_PER_SECOND / 1e6:.0f} MB/s); worst of {args.repeat} runs\n"
    )
    print(
        "| case | steady error (worst) | burst s found / true | burst MB found / true "
        "| throttle | stopped by | test s | MB moved | old fixed 2 s window: steady |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        runs = [probe(case) for _ in range(args.repeat)]
        steady_errors = [error(r["bytes_per_second"], STEADY_BYTES_PER_SECOND) for r in runs]  # type: ignore[arg-type]
        worst = max(steady_errors, key=abs)
        last = runs[-1]
        true_seconds = case.true_burst_bytes / BURST_BYTES_PER_SECOND
        found_seconds = last["burst_seconds"]
        found_bytes = last["burst_bytes"]
        burst_seconds = (
            f"{found_seconds:.2f} / {true_seconds:.2f}"
            if found_seconds is not None
            else f"none / {true_seconds:.2f}"
        )
        burst_bytes = (
            f"{found_bytes / 1e6:.1f} / {case.true_burst_bytes / 1e6:.1f}"  # type: ignore[operator]
            if found_bytes is not None
            else f"none / {case.true_burst_bytes / 1e6:.1f}"
        )
        old = old_fixed_window(last["per_second_bytes"])  # type: ignore[arg-type]
        print(
            f"| {case.name} | {worst:+.2%} | {burst_seconds} | {burst_bytes} | {last['throttle']} "
            f"| {last['stop_reason']} | {last['duration_seconds']:.1f} | {last['bytes'] / 1e6:.0f} "  # type: ignore[operator]
            f"| {old / STEADY_BYTES_PER_SECOND:.2f}× the true rate |",
            flush=True,
        )


if __name__ == "__main__":
    main()
