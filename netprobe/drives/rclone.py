"""Any drive rclone can reach (Google Drive, OneDrive, 115, PikPak...), through rclone itself.

rclone runs as a subprocess (`cat` to download, `rcat` to upload, `deletefile` to clean up);
the bytes are counted here as they cross the pipe, on our clock. rclone's own `speed` figure is
an exponentially weighted average that swings and is never used.

    url: "gdrive:"                                   (a remote in rclone.conf)
    url: ":webdav,url='http://nas:8080':"             (an on-the-fly connection string)
    credentials: {config_file: /etc/netprobe/rclone.conf}
"""

from __future__ import annotations

import asyncio
import contextlib
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


class RcloneDrive:
    """A path on an rclone remote, driven through the `rclone` command."""

    def __init__(self, drive: DriveConfig, redactor: Redactor, binary: str = "rclone") -> None:
        self.drive = drive
        self.redactor = redactor
        self.binary = binary
        self.flags = ["--retries", "1", "--low-level-retries", "1"]
        if drive.credentials.config_file:
            self.flags += ["--config", drive.credentials.config_file]
        for name, value in drive.headers.items():
            self.flags += ["--header", f"{name}: {value}"]

    def target(self, path: str) -> str:
        remote = self.drive.url
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


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill rclone if it still runs (the transfer was cancelled) and wait for it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
