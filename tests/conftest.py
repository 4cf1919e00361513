"""Shared fixtures: the shaped-link lab and a loopback netprobe server."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab import Lab, free_port, lab_unavailable


@pytest.fixture
def make_lab() -> Iterator[type[Lab]]:
    """Build labs with `make_lab(down=..., up=...)`, with distance through `rtt_ms=`, `loss=`,
    `jitter_ms=`, frames one by one through `frames=True` (see tests/lab.py); skipped with a
    reason when not root."""
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    labs: list[Lab] = []

    def build(down: str = "100Mbit", up: str | None = None, **link: float | bool) -> Lab:
        lab = Lab(down, up, **link).__enter__()  # type: ignore[arg-type]
        labs.append(lab)
        return lab

    yield build  # type: ignore[misc]
    for lab in labs:
        lab.close()


@contextlib.contextmanager
def serving(argv: list[str], port: int) -> Iterator[str]:
    """Run a server process until the block ends; yields its loopback URL once it listens."""
    from lab import wait_for_port

    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def loopback_server() -> Iterator[str]:
    """`netprobe serve` on loopback in its own process; yields its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "netprobe", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with serving(argv, port) as url:
        yield url
