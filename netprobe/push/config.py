"""The `push:` section of the configuration (remote_write target)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PushConfig:
    """Where and how to push samples."""

    url: str
