"""Credentials (cloud-drive tokens, push passwords) kept out of the configuration file.

A `Secret` in the configuration names where the value lives, an environment variable or a
file only its owner can read, and is read at each use, so a rotated token is picked up without
a restart. Errors name the variable or the file, never the value.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from netprobe.errors import ConfigError


@dataclass
class Secret:
    """Where a secret lives: an environment variable or a file only its owner can read."""

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of env or file")

    def reveal(self) -> str:
        """The secret's value; ConfigError names the variable or file, never the value."""
        if self.env is not None:
            value = os.environ.get(self.env, "")
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set or empty")
            return value
        path = Path(self.file or "")
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"cannot read secret file: {exc.strerror}", file=str(path)) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"secret file is readable by others (mode {stat.S_IMODE(mode):o}); "
                f"run: chmod 600 {path}",
                file=str(path),
            )
        value = path.read_text().strip()
        if not value:
            raise ConfigError("secret file is empty", file=str(path))
        return value
