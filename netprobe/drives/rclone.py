"""Any drive rclone can reach (Google Drive, OneDrive, 115, PikPak...), through rclone itself.

rclone runs as a subprocess (`cat` to download, `rcat` to upload, `deletefile` to clean up);
the bytes are counted here as they cross the pipe, on our clock. rclone's own `speed` figure is
an exponentially weighted average that swings and is never used.

    url: "gdrive:"                                   (a remote in rclone.conf)
    url: ":webdav,url='http://nas:8080':"             (an on-the-fly connection string)
    credentials: {config_file: /etc/netprobe/rclone.conf}

Nothing secret goes on rclone's command line, which every user can read in /proc: the
connection string's parameters and the header travel in rclone's own environment variables
(`RCLONE_CONFIG_<REMOTE>_<KEY>`, `RCLONE_HEADER`), readable only by the service's user. rclone
reads one header from its environment, so an rclone drive takes at most one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil

from netprobe.drives.adapter import CHUNK_BYTES, Meter, Redactor
from netprobe.drives.config import DriveConfig
from netprobe.errors import ConfigError, MeasurementError, ServerRefused, TransportError

# What rclone's last error line says -> reason. Checked in order.
_REASONS = (
    (re.compile(r"not found|doesn't exist|404", re.I), "not_found"),
    (re.compile(r"quota|storage.*full|limit exceeded", re.I), "quota"),
    (re.compile(r"401|unauthori[sz]ed|invalid_grant|token.*expired|expired.*token", re.I), "auth"),
    (re.compile(r"403|forbidden", re.I), "forbidden"),
    (re.compile(r"429|too many requests", re.I), "rate_limited"),
    (re.compile(r"didn't find section|config file|unknown backend", re.I), "config"),
    (re.compile(r"connection refused|no such host|timeout|unreachable", re.I), "unreachable"),
)
_QUERY = re.compile(r"\?\S*")
# Connection-string parameters whose values are kept out of messages.
_SECRET_KEY = re.compile(r"pass|token|secret|key|auth|cookie|credential", re.I)
# The name an on-the-fly remote (":backend,...:") gets in the environment.
ON_THE_FLY_REMOTE = "netprobedrive"


class RcloneDrive:
    """A path on an rclone remote, driven through the `rclone` command."""

    def __init__(self, drive: DriveConfig, redactor: Redactor, binary: str = "rclone") -> None:
        self.drive = drive
        self.redactor = redactor
        self.binary = binary
        self.flags = ["--retries", "1", "--low-level-retries", "1"]
        if drive.credentials.config_file:
            self.flags += ["--config", drive.credentials.config_file]
        self.remote, self.environment = remote_environment(drive.url)
        for key, value in self.environment.items():
            if _SECRET_KEY.search(key.removeprefix("RCLONE_CONFIG_")):
                redactor.add(value)
        for name, value in drive.headers.items():
            self.environment["RCLONE_HEADER"] = f"{name}: {redactor.add(value)}"

    def target(self, path: str) -> str:
        remote = self.remote
        joiner = "" if remote.endswith((":", "/")) else "/"
        return remote + joiner + path.lstrip("/")

    async def open(self) -> str:
        if shutil.which(self.binary) is None:
            raise ConfigError(f"{self.binary} is not installed (apt install rclone)")
        return "unknown"

    async def _spawn(self, *args: str, stdin: bool = False) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            *self.flags,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.environment},
        )

    async def _finish(self, process: asyncio.subprocess.Process, what: str) -> None:
        assert process.stderr is not None
        stderr = await process.stderr.read()
        if await process.wait() != 0:
            raise self._error(stderr.decode(errors="replace"), what)

    def _error(self, stderr: str, what: str) -> MeasurementError:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        last = _QUERY.sub("", self.redactor.scrub(lines[-1] if lines else "no message"))[-200:]
        reason = next((r for pattern, r in _REASONS if pattern.search(last)), "rclone_failed")
        if reason == "unreachable":
            return TransportError(f"rclone {what} failed: {last}", reason=reason)
        return ServerRefused(f"rclone {what} failed: {last}", reason=reason)

    async def download(self, meter: Meter) -> None:
        meter.request()
        # No read-ahead buffer: the bytes then cross the pipe as they come off the network.
        process = await self._spawn(
            "cat", "--buffer-size", "0", self.target(self.drive.download.path)
        )
        assert process.stdout is not None
        try:
            while chunk := await process.stdout.read(CHUNK_BYTES):
                meter.add(len(chunk))
            await self._finish(process, "cat")
        finally:
            await _reap(process)

    async def upload(self, path: str, payload: bytes, meter: Meter) -> None:
        meter.request()
        process = await self._spawn("rcat", self.target(path), stdin=True)
        assert process.stdin is not None
        try:
            view = memoryview(payload)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for offset in range(0, len(payload), CHUNK_BYTES):
                    chunk = view[offset : offset + CHUNK_BYTES]
                    process.stdin.write(chunk)
                    await process.stdin.drain()
                    meter.add(len(chunk))
                process.stdin.close()
            await self._finish(process, "rcat")
        finally:
            await _reap(process)

    async def delete(self, path: str) -> None:
        process = await self._spawn("deletefile", self.target(path))
        try:
            await self._finish(process, "deletefile")
        finally:
            await _reap(process)

    async def close(self) -> None:
        return None


def remote_environment(url: str) -> tuple[str, dict[str, str]]:
    """The remote to name on the command line, and the variables that carry its parameters.

    ":webdav,url='http://nas',pass=X:dir" -> ("netprobedrive:dir", {..._TYPE: webdav, ..._URL:
    http://nas, ..._PASS: X}); "gdrive,chunk_size=8M:" -> ("gdrive:", {..._CHUNK_SIZE: 8M}).
    """
    on_the_fly = url.startswith(":")
    head, *path = _split_unquoted(url[1:] if on_the_fly else url, ":")
    name, *parameters = _split_unquoted(head, ",")
    settings: dict[str, str] = {}
    if on_the_fly:
        settings["TYPE"] = name
        name = ON_THE_FLY_REMOTE
    for parameter in parameters:
        key, sep, value = parameter.partition("=")
        settings[key.strip()] = _unquote(value) if sep else "true"
    prefix = "RCLONE_CONFIG_" + name.upper().replace("-", "_") + "_"
    environment = {prefix + key.upper().replace("-", "_"): v for key, v in settings.items()}
    return f"{name}:{':'.join(path)}", environment


def _split_unquoted(text: str, separator: str) -> list[str]:
    """`text` split at `separator` outside '...' or "..." (quotes kept)."""
    parts, current, quote = [], "", ""
    for c in text:
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == separator:
            parts.append(current)
            current = ""
            continue
        current += c
    return [*parts, current]


def _unquote(value: str) -> str:
    """rclone's quoting: 'a''b' is a'b; unquoted values are as they are."""
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        quote = value[0]
        return value[1:-1].replace(quote * 2, quote)
    return value


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill rclone if it still runs (the transfer was cancelled) and wait for it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
