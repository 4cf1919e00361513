"""`netprobe speed` end to end on loopback: JSON output, exit codes, and one clear line for
every kind of bad input, always within the time limit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab import free_port, wait_for_port

HERE = Path(__file__).parent


def speed(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netprobe", "speed", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def hostile():
    processes = []

    def start(mode: str) -> str:
        port = free_port()
        processes.append(
            subprocess.Popen([sys.executable, str(HERE / "hostile.py"), mode, str(port)])
        )
        wait_for_port("127.0.0.1", port)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_json_has_both_directions_with_samples(loopback_server):
    done = speed("--server", loopback_server, "--duration", "1", "--max-bytes", "100GB", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for direction in ("download", "upload"):
        measured = result[direction]
        assert measured["ok"] and measured["bytes_per_second"] > 0
        assert measured["bytes"] > 0 and measured["streams"] >= 1
        assert measured["duration_seconds"] > measured["window_seconds"] > 0
        assert len(measured["samples"]) == measured["streams"]
        assert measured["method"]["aggregate"] == "rmbt"
    assert result["upload"]["method"]["measured_at"] == "receiver"


def test_below_plan_has_its_own_exit_code(loopback_server):
    done = speed(
        "--server",
        loopback_server,
        "--direction",
        "down",
        "--duration",
        "1",
        "--max-bytes",
        "100GB",
        "--plan",
        "10000G/1G",
    )
    assert done.returncode == 3, done.stderr
    assert "% of" in done.stdout


def assert_one_clear_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("netprobe: error: ")
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]


def test_a_server_that_is_not_listening():
    done = speed("--server", f"http://127.0.0.1:{free_port()}")
    assert_one_clear_line(done, 1, "refused")


def test_a_plain_web_server_is_not_a_netprobe_server(tmp_path):
    port = free_port()
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        done = speed("--server", f"http://127.0.0.1:{port}")
    finally:
        web.kill()
    assert_one_clear_line(done, 1, "not a netprobe server", "404")


def test_a_server_that_accepts_and_never_answers(hostile):
    started = time.monotonic()
    done = speed("--server", hostile("silent"), "--time-limit", "10")
    assert_one_clear_line(done, 1, "did not answer")
    assert time.monotonic() - started < 30


def test_a_server_that_resets_mid_test(hostile):
    done = speed("--server", hostile("reset"), "--direction", "down", "--time-limit", "10")
    assert_one_clear_line(done, 1, "reset")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--server", "htp:/nowhere"], ["not an http(s) URL"]),
        (["--server", "http://127.0.0.1:99999"], ["port"]),
        (["--server", "http://x", "--direction", "sideways"], ["--direction"]),
        (["--server", "http://x", "--streams", "0"], ["--streams"]),
        (["--server", "http://x", "--max-bytes", "lots"], ["not a size"]),
        (["--server", "http://x", "--plan", "fast"], ["--plan"]),
        (["--server", "http://x", "--protocol", "carrier-pigeon"], ["unknown protocol"]),
        (["--bogus"], ["--bogus"]),
        ([], ["--server"]),
    ],
)
def test_nonsense_options_exit_2_with_one_line(args, words):
    assert_one_clear_line(speed(*args, timeout=20), 2, *words)


def test_json_carries_the_plan_and_the_share_of_it(loopback_server):
    done = speed(
        "--server",
        loopback_server,
        "--direction",
        "down",
        "--duration",
        "1",
        "--max-bytes",
        "100GB",
        "--plan",
        "10000Gbps/1Gbps",
        "--json",
    )
    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert result["plan"] == {
        "download_bytes_per_second": 10000e9 / 8,
        "upload_bytes_per_second": 1e9 / 8,
        "min_share": 0.9,
    }
    measured = result["download"]
    assert measured["share_of_plan"] == pytest.approx(measured["bytes_per_second"] / (10000e9 / 8))
    assert measured["below_plan"] is True


def test_progress_hides_the_upload_rate_until_warm_up_ends_and_says_what_it_waits_for():
    import io

    from rich.console import Console

    from netprobe.console import ProgressSink
    from netprobe.events import Event

    sink = ProgressSink(Console(file=io.StringIO(), force_terminal=True))
    sink.emit(Event("started", "upload"))
    # The sender's count in the first second: socket buffers filling, not the line's rate.
    early = sink.sample_line(Event("sample", "upload", 1.0, 25e6, 4, 25_000_000))
    assert "Mbit/s" not in early and "rate after warm-up" in early
    sink.emit(Event("warmup_done", "upload", 4.0, 2.5e6, 4, 30_000_000))
    assert "20.0 Mbit/s" in sink.sample_line(Event("sample", "upload", 5.0, 2.5e6, 4, 32_500_000))
    assert "20.0 Mbit/s" in sink.sample_line(Event("sample", "download", 5.0, 2.5e6, 4, 1))
    sink.emit(Event("finishing", "upload", 9.0, detail=10.0))
    sink.emit(Event("finished", "upload", 12.0))


async def test_a_run_says_it_is_finishing_before_it_finishes(loopback_server):
    from netprobe.events import Recorder
    from netprobe.measure.engine import EngineOptions
    from netprobe.measure.line import backend_for, measure_line

    recorder = Recorder()
    options = EngineOptions(duration_seconds=1.0, time_limit_seconds=20.0)
    result = await measure_line(
        backend_for("native", loopback_server), ["upload"], options, recorder
    )
    upload = result.upload
    assert upload is not None and upload.ok, upload and f"{upload.reason}: {upload.error}"
    kinds = [e.kind for e in recorder.events]
    assert kinds.index("warmup_done") < kinds.index("finishing") < kinds.index("finished")
