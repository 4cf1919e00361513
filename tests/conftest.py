"""Shared fixtures: the shaped-link lab and a loopback netprobe server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab import Lab, lab_unavailable


@pytest.fixture
def make_lab() -> Iterator[type[Lab]]:
    """Build labs with `make_lab(down=..., up=...)`; skipped with a reason when not root."""
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    labs: list[Lab] = []

    def build(down: str = "100Mbit", up: str | None = None) -> Lab:
        lab = Lab(down, up).__enter__()
        labs.append(lab)
        return lab

    yield build  # type: ignore[misc]
    for lab in labs:
        lab.close()
