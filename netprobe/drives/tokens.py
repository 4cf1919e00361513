"""Rotated refresh tokens, kept in the service's own state directory.

Baidu's refresh tokens are single-use: each refresh answers a new one and the old one is dead.
The configured token usually sits where the service may only read (`/etc/netprobe`, root-owned,
0750), so the newest token lives in the state directory (systemd's `$STATE_DIRECTORY`, else
`/var/lib/netprobe`) and is read from there first. It remembers a digest of the configured token
it descends from: when the operator configures a fresh token, that one wins again.

The write is made ready before the old token is spent: a probe whose state directory cannot take
the new token fails before refreshing, with the old token still good.

    store = TokenStore(drive.name, credentials.refresh_token)
    with store.rotation() as rotation:       # TokenStoreError here: nothing was spent
        granted = refresh(store.current())
        rotation.commit(granted["refresh_token"])   # temporary file, fsync, rename, fsync
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from netprobe.errors import ConfigError
from netprobe.secrets import Secret

DEFAULT_STATE_DIR = Path("/var/lib/netprobe")


class TokenStoreError(ConfigError):
    """The state directory cannot keep a rotated token (a failed probe with reason token_store)."""

    reason = "token_store"


def state_dir() -> Path:
    """The service's own writable directory: systemd's StateDirectory=, else the default."""
    given = os.environ.get("STATE_DIRECTORY", "")
    return Path(given.split(":")[0]) if given else DEFAULT_STATE_DIR


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The newest refresh token of one drive account."""

    def __init__(self, drive_name: str, configured: Secret, directory: Path | None = None):
        self.configured = configured
        self.directory = (directory or state_dir()) / "tokens"
        self.path = self.directory / f"{drive_name}.json"

    def current(self) -> str:
        """The rotated token if it descends from the configured one, else the configured one."""
        configured = self.configured.reveal()
        try:
            kept = json.loads(self.path.read_text())
        except FileNotFoundError:
            return configured
        except (OSError, ValueError) as exc:
            raise TokenStoreError(
                f"cannot read the kept refresh token {self.path}: "
                f"{getattr(exc, 'strerror', None) or 'not valid JSON'}"
            ) from None
        if not isinstance(kept, dict) or not isinstance(kept.get("refresh_token"), str):
            raise TokenStoreError(f"the kept refresh token {self.path} has no refresh_token")
        if kept.get("configured_sha256") != _digest(configured):
            return configured  # the operator configured a fresh token since
        return kept["refresh_token"]

    @contextlib.contextmanager
    def rotation(self) -> Iterator[Rotation]:
        """A place for the next token, made before the current one is spent."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A name of its own (mode 0600): a second probe of the same drive cannot clobber it.
            fd, name = tempfile.mkstemp(dir=self.directory, prefix=self.path.name, suffix=".new")
        except OSError as exc:
            raise TokenStoreError(
                f"cannot keep a rotated refresh token in {self.directory}: {exc.strerror}; "
                "the token was not refreshed (give the service a writable state directory)"
            ) from None
        temporary = Path(name)
        rotation = Rotation(fd, temporary, self.path, _digest(self.configured.reveal()))
        try:
            yield rotation
        finally:
            os.close(fd)
            if not rotation.committed:
                with contextlib.suppress(OSError):
                    temporary.unlink()


class Rotation:
    """An open temporary file waiting for the rotated token."""

    def __init__(self, fd: int, temporary: Path, path: Path, configured_sha256: str) -> None:
        self.fd = fd
        self.temporary = temporary
        self.path = path
        self.configured_sha256 = configured_sha256
        self.committed = False

    def commit(self, token: str) -> None:
        """Write the token durably: on a power cut the old file or the new one survives whole."""
        record = {"refresh_token": token, "configured_sha256": self.configured_sha256}
        try:
            os.write(self.fd, json.dumps(record).encode())
            os.fsync(self.fd)
            os.replace(self.temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise TokenStoreError(
                f"Baidu rotated the refresh token but {self.path} could not be written: "
                f"{exc.strerror}; authorise the app again once the state directory is fixed"
            ) from None
        self.committed = True
