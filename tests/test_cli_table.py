"""The CLI test table: each input a user might type, the exact line netprobe prints, the exit
code. The same rows are the table in docs/cli.md; this test fails when either drifts.

`{port}` stands for a port chosen at run time (a closed one, or one held by this test).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lab import free_port

from netprobe import __version__

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")
DOCS = Path(__file__).parent.parent / "docs" / "cli.md"

# (arguments, the one line printed, exit code); stdout for success, stderr otherwise.
CASES: list[tuple[str, str, int]] = [
    ("--version", f"netprobe {__version__}", 0),
    (
        "speed --server http://127.0.0.1:{port} --plan 100Mbps/20",
        "netprobe: error: --plan '100Mbps/20': a rate needs a unit: '20' "
        "(write e.g. 20M for Mbit/s)",
        2,
    ),
    (
        "speed --server 127.0.0.1:{port}",
        "netprobe: error: not an http(s) URL: '127.0.0.1:{port}'",
        2,
    ),
    (
        "speed --server http://127.0.0.1:{port} --direction sideways",
        "netprobe: error: --direction must be down, up or both, not 'sideways'",
        2,
    ),
    (
        "speed --server http://127.0.0.1:{port} --max-bytes 1.5Gb",
        "netprobe: error: not a size: '1.5Gb' (lower-case b means bits; sizes are in bytes, B)",
        2,
    ),
    (
        "speed --server http://127.0.0.1:{port}",
        "netprobe: error: connection refused by 127.0.0.1:{port}",
        1,
    ),
    (
        "serve --host 127.0.0.1 --port {port}",
        "netprobe: error: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another netprobe or server?)",
        2,
    ),
    (
        "drive --url example.net/file.bin --kind http",
        "netprobe: error: --url must be an http(s) URL such as https://host/file, not "
        "'example.net/file.bin'",
        2,
    ),
    (
        "agent --config agent.yml",
        "netprobe: error: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another netprobe or server?)",
        2,
    ),
    (
        "latency 127.0.0.1 --icmp --tcp 80",
        "netprobe: error: --icmp and --tcp exclude each other",
        2,
    ),
    (
        "--lang klingon version",
        "netprobe: error: --lang 'klingon' is not available (known: en, zh_CN)",
        2,
    ),
    (
        "results list",
        "netprobe: error: give --config FILE or --store PATH",
        2,
    ),
    (
        "report --input missing.jsonl --plan 100M/20M",
        "netprobe: error: missing.jsonl: no such file or directory",
        2,
    ),
    (
        "report --input results.csv --plan 100M/20M",
        "netprobe: error: this file is CSV, not netprobe's JSON lines: bring it in with "
        "`netprobe results import FILE`, then report from the store",
        2,
    ),
    (
        "report --input no-start.jsonl --plan 100M/20M",
        "netprobe: error: record 1 (id r1) has no started_at",
        2,
    ),
    (
        "report --input naive-time.jsonl --plan 100M/20M",
        "netprobe: error: record 1 (id r1): started_at '2026-03-02T10:00:00' is not an ISO "
        "8601 time with an offset",
        2,
    ),
    (
        "report --input naive-time.jsonl --plan 100M/20M --policy xx-none",
        "netprobe: error: --policy 'xx-none' is unknown (known: cn-miit, de-bnetza, us-fcc, "
        "eu-berec, au-accc)",
        2,
    ),
    (
        "report --input naive-time.jsonl",
        "netprobe: error: give --config FILE or --plan DOWN/UP: the report needs the contract",
        2,
    ),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "results.csv").write_text("seq,id,kind,started_at\n1,r1,line,2026-03-02\n")
    (tmp_path / "no-start.jsonl").write_text('{"id": "r1", "kind": "line"}\n')
    (tmp_path / "naive-time.jsonl").write_text(
        '{"id": "r1", "kind": "line", "started_at": "2026-03-02T10:00:00"}\n'
    )
    return tmp_path


@pytest.mark.parametrize(("arguments", "printed", "code"), CASES, ids=[c[0] for c in CASES])
def test_each_input_prints_one_line_and_its_exit_code(
    workdir: Path, arguments: str, printed: str, code: int
) -> None:
    with socket.socket() as held:
        if arguments.startswith(("serve", "agent")):
            held.bind(("127.0.0.1", 0))
            held.listen()
            port = held.getsockname()[1]
        else:
            port = free_port()
        (workdir / "agent.yml").write_text(
            "contract: {download: 100Mbit, upload: 20Mbit}\n"
            "servers: [{url: 'http://127.0.0.1:9/'}]\n"
            f"store: {{path: results.db}}\nexporter: {{listen: '127.0.0.1:{port}'}}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "netprobe", *arguments.format(port=port).split()],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=workdir,
            check=False,
        )
    output = done.stdout if code == 0 else done.stderr
    assert done.returncode == code, (done.stdout, done.stderr)
    # The agent's own log lines (timestamped) may come first; the error is still one line.
    lines = [line for line in output.strip().splitlines() if not LOG_LINE.match(line)]
    assert lines == [printed.format(port=port)]
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr


def test_the_docs_table_shows_every_case() -> None:
    table = DOCS.read_text(encoding="utf-8")
    for arguments, printed, code in CASES:
        row = f"| `netprobe {arguments}` | `{printed}` | {code} |"
        assert row.replace(__version__, "VERSION") in table, row


def test_flags_show_no_type_placeholder_and_commands_show_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", "speed", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "<bool>" not in done.stdout
    assert "Examples:" in done.stdout and "--plan 100Mbps/20Mbps" in done.stdout
