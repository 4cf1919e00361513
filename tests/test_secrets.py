"""Secrets never leave the agent: a server URL with `user:password@` and `?token=`, a push
password and a drive token from the environment, one real cycle of `netprobe agent` against
loopback servers (netprobe serve, a remote_write receiver, an HTTP drive), then a grep of
everything a reader can see for each secret: the store file, `results export` as JSON lines
and CSV, an HTML report, the agent's log, /metrics, and the command lines of the agent and of
every process it started."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from agentproc import AgentProcess, stored, wait_for, write_config
from lab import free_port, wait_for_port

SERVER_PASSWORD = "srvpw-4f1c9e"
SERVER_TOKEN = "qtok-8a2d71"
PUSH_PASSWORD = "pushpw-c3b0d5"
DRIVE_TOKEN = "drvtok-97e6aa"
DAV_PASSWORD = "davpw-5be0f2"
DRIVE_FILE_BYTES = 2 * 1024 * 1024


class Loopback(BaseHTTPRequestHandler):
    """A remote_write receiver (POST) and an HTTP drive (GET) that note the credentials sent."""

    authorizations: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.authorizations.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self.authorizations.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", str(DRIVE_FILE_BYTES))
        self.end_headers()
        chunk = bytes(64 * 1024)
        for _ in range(DRIVE_FILE_BYTES // len(chunk)):
            self.wfile.write(chunk)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[tuple[int, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Loopback)
    server.daemon_threads = True
    Loopback.authorizations = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], Loopback.authorizations
    server.shutdown()
    server.server_close()


@pytest.fixture
def webdav(tmp_path: Path) -> Iterator[int]:
    """`rclone serve webdav` with a password, for a drive that the agent reaches through rclone."""
    if shutil.which("rclone") is None:
        pytest.skip("rclone is missing (bash probes/dev-setup.sh installs it)")
    share = tmp_path / "share"
    share.mkdir()
    (share / "file.bin").write_bytes(bytes(DRIVE_FILE_BYTES))
    port = free_port()
    server = subprocess.Popen(
        [
            *("rclone", "serve", "webdav", str(share), "--addr", f"127.0.0.1:{port}"),
            *("--user", "probe", "--pass", DAV_PASSWORD),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, process=server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def netprobe_server() -> Iterator[int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, process=server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = set(), [pid]
    while pending:
        current = pending.pop()
        found.add(current)
        pending.extend(children.get(current, []))
    return found


def cmdlines(pids: set[int]) -> str:
    text = []
    for pid in pids:
        try:
            text.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # ended meanwhile
    return "\n".join(text)


def netprobe(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_no_secret_reaches_records_exports_reports_logs_metrics_or_cmdlines(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loopback: tuple[int, list[str]],
    netprobe_server: int,
    webdav: int,
) -> None:
    port, authorizations = loopback
    monkeypatch.setenv("NP_TEST_PUSH_PASSWORD", PUSH_PASSWORD)  # the agent inherits these
    monkeypatch.setenv("NP_TEST_DRIVE_TOKEN", DRIVE_TOKEN)
    server_url = f"http://probe:{SERVER_PASSWORD}@127.0.0.1:{netprobe_server}/?token={SERVER_TOKEN}"
    obscured = subprocess.run(
        ["rclone", "obscure", DAV_PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    secrets = (SERVER_PASSWORD, SERVER_TOKEN, PUSH_PASSWORD, DRIVE_TOKEN, DAV_PASSWORD, obscured)
    config = write_config(
        tmp_path,
        servers=[{"url": server_url, "name": "loopback"}],
        push={
            "url": f"http://127.0.0.1:{port}/api/v1/write",
            "interval": "1s",
            "basic_auth": {"username": "probe", "password": {"env": "NP_TEST_PUSH_PASSWORD"}},
        },
        drives=[
            {
                "name": "loopback-drive",
                "kind": "http",
                "url": f"http://127.0.0.1:{port}",
                "credentials": {"token": {"env": "NP_TEST_DRIVE_TOKEN"}},
                "download": {"path": "/file.bin"},
                "duration": "1s",
                "max_bytes": "4MiB",
            },
            {
                "name": "rclone-drive",
                "kind": "rclone",
                "url": f":webdav,url='http://127.0.0.1:{webdav}',user=probe,pass={obscured}:",
                "download": {"path": "file.bin"},
                "duration": "1s",
                "max_bytes": "4MiB",
            },
        ],
    )
    agent = AgentProcess(config)
    try:
        process_lines = [cmdlines(descendants(agent.process.pid))]

        def probed() -> bool:
            process_lines.append(cmdlines(descendants(agent.process.pid)))
            drives = [r for r in stored(tmp_path / "results.db") if r.get("kind") == "drive"]
            return len(drives) == 2

        wait_for("a line test and both drive probes in the store", probed, timeout_seconds=120)
        push_auth = "Basic " + base64.b64encode(f"probe:{PUSH_PASSWORD}".encode()).decode()
        wait_for("a push with the password", lambda: push_auth in authorizations)
        assert f"Bearer {DRIVE_TOKEN}" in authorizations  # the secrets were in play
        _, metrics = agent.get("/metrics")
    finally:
        agent.stop()
    records = stored(tmp_path / "results.db")
    line = next(r for r in records if r.get("kind") == "line")
    downloads = {r["drive"]: r["download"]["ok"] for r in records if r.get("kind") == "drive"}
    assert downloads == {"loopback-drive": True, "rclone-drive": True}  # the secrets worked
    assert line["server"]["url"] == f"http://127.0.0.1:{netprobe_server}/?token=*"
    database = b"".join(p.read_bytes() for p in tmp_path.glob("results.db*"))
    report = tmp_path / "report.html"
    netprobe("report", "--config", str(config), "--format", "html", "--output", str(report))
    seen = {
        "store file": database.decode("latin-1"),
        "export jsonl": netprobe("results", "export", "--config", str(config)),
        "export csv": netprobe("results", "export", "--config", str(config), "--format", "csv"),
        "html report": report.read_text(),
        "agent log": agent.log.read_text(),
        "metrics": metrics,
        "command lines": "\n".join(process_lines),
    }
    assert "loopback" in seen["export jsonl"] and "<html" in seen["html report"].lower()
    assert f"--config {config}" in seen["command lines"]  # the scan saw the agent itself
    assert "rclone" in seen["command lines"]  # and the rclone it started
    leaks = [(where, s) for where, text in seen.items() for s in secrets if s in text]
    assert leaks == []
