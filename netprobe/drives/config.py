"""The `drives:` section of the configuration (one entry per cloud-drive account to probe)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DriveConfig:
    """One drive account to probe."""

    name: str
    kind: str
    url: str
