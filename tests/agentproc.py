"""Run `netprobe agent` as a real process in tests: write its configuration, wait until it
serves, read its metrics and its store, stop it with a signal."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from lab import free_port

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_seconds: float = 60.0) -> T:
    """Poll `check` until it returns something truthy; generous timeouts for a loaded machine."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_config(directory: Path, **sections: Any) -> Path:
    """An agent configuration with test-friendly defaults, overridden per section."""
    config: dict[str, Any] = {
        "probe": {"id": "test-probe"},
        "contract": {"operator": "Lab", "plan": "20/5", "download": "20Mbit", "upload": "5Mbit"},
        "schedule": {
            "mean_interval": "1h",
            "min_interval": "30m",
            "max_interval": "2h",
            "startup_delay": "1s",
        },
        "measurement": {"directions": ["download"], "duration": "1s", "streams": 2},
        "gates": {
            "cpu_threshold_percent": None,
            "sample_duration": "0.5s",
            "recheck_interval": "1s",
            "max_hold": "60s",
        },
        "store": {"path": "results.db"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    path = directory / "agent.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class AgentProcess:
    """`python -m netprobe agent` with its log in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.log = config.with_suffix(f".{self.port}.log")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netprobe",
                "agent",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for("the agent to serve /-/healthy", self.healthy)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the agent exited early:\n{self.log.read_text()}")
        try:
            with urllib.request.urlopen(self.url + "/-/healthy", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[str, float]:
        _, text = self.get("/metrics")
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def stop(self, sig: int = signal.SIGTERM, timeout_seconds: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_seconds)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def stored(db: Path) -> list[dict[str, Any]]:
    """Records in the store, read by a separate connection as any reader would."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as connection:
        try:
            rows = connection.execute("SELECT record FROM results ORDER BY seq").fetchall()
        except sqlite3.OperationalError:
            return []
    return [json.loads(row[0]) for row in rows]


def running(db: Path) -> list[str]:
    """Ids of tests marked as running."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT id FROM running")]
        except sqlite3.OperationalError:
            return []
