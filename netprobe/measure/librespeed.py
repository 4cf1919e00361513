"""LibreSpeed, client side: a backend base URL or a server list, multi-stream through the engine.

A server is the folder holding LibreSpeed's backend scripts (`--server https://host/backend`)
or a server list in the `servers.php` / server-list JSON format, fetched over HTTP(S) when the
URL ends in `.json` or `.php`, or read from a local file path:

    [{"name": "Amsterdam", "server": "//ams.example.net/backend", "dlURL": "garbage.php",
      "ulURL": "empty.php", "pingURL": "empty.php", "getIpURL": "getIP.php"}]

From a list the server with the lowest latency that answers getIP is used (select.py).
Download: GET `dlURL?ckSize=100` (100 MiB per request) on each stream; upload: POSTs of
20 MiB to `ulURL` (LibreSpeed's own blob size), counted as the server's TCP acknowledged them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from netprobe.errors import ConfigError, ProtocolError
from netprobe.events import Sink
from netprobe.measure.engine import EngineOptions, measure_direction
from netprobe.measure.http import Connection
from netprobe.measure.requestloop import RequestLoop, refused
from netprobe.measure.select import choose
from netprobe.results import Direction, DirectionResult, Server

DOWNLOAD_CHUNKS = 100
UPLOAD_REQUEST_BYTES = 20 << 20
_FIELDS = {"server": "server", "dlURL": "dl_url", "ulURL": "ul_url", "pingURL": "ping_url"}


@dataclass(frozen=True)
class LibreSpeedServer:
    """One entry of a LibreSpeed server list (paths are relative to `server`)."""

    name: str
    server: str
    dl_url: str = "garbage.php"
    ul_url: str = "empty.php"
    ping_url: str = "empty.php"
    get_ip_url: str = "getIP.php"

    @property
    def base_url(self) -> str:
        # Lists use protocol-relative URLs ("//host/backend") meant for the page's scheme.
        base = f"https:{self.server}" if self.server.startswith("//") else self.server
        return base.rstrip("/")

    def path(self, relative: str) -> str:
        return "/" + relative.lstrip("/")


def parse_server_list(text: str, source: str) -> list[LibreSpeedServer]:
    """Servers from a LibreSpeed list; a ConfigError naming the entry and key when malformed."""
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"not JSON: {exc}", file=source) from None
    if not isinstance(entries, list) or not entries:
        raise ConfigError("a server list must be a non-empty JSON array", file=source)
    servers = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError("each server must be a JSON object", file=source, key=f"[{k}]")
        values: dict[str, Any] = {}
        for key, attribute in _FIELDS.items():
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError("missing or not a string", file=source, key=f"[{k}].{key}")
            values[attribute] = value
        get_ip = entry.get("getIpURL", "getIP.php")
        base = values["server"]
        scheme = urlsplit(f"https:{base}" if base.startswith("//") else base).scheme
        if scheme not in ("http", "https"):
            raise ConfigError("must be an http(s) URL", file=source, key=f"[{k}].server")
        servers.append(
            LibreSpeedServer(name=str(entry.get("name", base)), get_ip_url=str(get_ip), **values)
        )
    return servers


def _is_address(body: bytes) -> bool:
    try:
        ipaddress.ip_address(body.decode("ascii", "replace").strip())
    except ValueError:
        return False
    return True


class LibreSpeedBackend:
    """Measures against a LibreSpeed backend, or the fastest server of a LibreSpeed list."""

    protocol = "librespeed"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.server: LibreSpeedServer | None = None

    def _is_list(self) -> bool:
        path = urlsplit(self.url).path
        return not self.url.startswith(("http://", "https://")) or path.endswith((".json", ".php"))

    async def connect(self) -> Server:
        if self._is_list():
            try:
                candidates = parse_server_list(await self._fetch_list(), self.url)
            except ConfigError as exc:
                if not self.url.startswith(("http://", "https://")):
                    raise
                # A list served by someone else is their protocol error, not our configuration.
                raise ProtocolError(
                    f"malformed server list: {exc}", reason="bad_server_list"
                ) from None
            server, _ = await choose(
                candidates, self._ping, self._check, name=lambda s: f"{s.name} ({s.base_url})"
            )
        else:
            server = LibreSpeedServer(name=self.url, server=self.url)
            await self._check(server)
        self.server = server
        return Server(url=server.base_url, name=server.name, protocol=self.protocol)

    async def _fetch_list(self) -> str:
        if not self.url.startswith(("http://", "https://")):
            try:
                return Path(self.url).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the server list: {exc.strerror}", file=self.url
                ) from None
        conn = await Connection.open(self.url, timeout_seconds=self.timeout_seconds)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                status, _, body = await conn.request("GET", "")
        except TimeoutError:
            raise ProtocolError(
                f"{self.url} did not send the server list", reason="stalled"
            ) from None
        finally:
            conn.abort()
        if status != 200:
            raise refused("the server list", status, body)
        return body.decode("utf-8", "replace")

    async def _check(self, server: LibreSpeedServer) -> None:
        """getIP must answer: it tells a LibreSpeed backend from any other web server.

        A getIP that fails on the server's side (5xx, e.g. a backend without its GeoIP file)
        only means the ISP information is missing: LibreSpeed's own client carries on.
        """
        status, body = await self._get(server, server.get_ip_url)
        if status >= 500:
            return
        if status != 200:
            raise ProtocolError(
                f"{server.base_url} is not a LibreSpeed backend "
                f"({server.get_ip_url} answered HTTP {status})",
                reason="not_librespeed",
            )
        try:
            answer = json.loads(body)
            ok = isinstance(answer, dict) and "processedString" in answer
        except ValueError:
            ok = _is_address(body)  # old backends answer the bare IP
        if not ok:
            raise ProtocolError(
                f"{server.base_url} is not a LibreSpeed backend (unexpected getIP answer)",
                reason="not_librespeed",
            )

    async def _get(self, server: LibreSpeedServer, relative: str) -> tuple[int, bytes]:
        conn = await Connection.open(server.base_url, timeout_seconds=self.timeout_seconds)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                status, _, body = await conn.request("GET", server.path(relative))
        except TimeoutError:
            raise ProtocolError(
                f"{server.base_url} accepted the connection but did not answer within "
                f"{self.timeout_seconds:g} s",
                reason="stalled",
            ) from None
        finally:
            conn.abort()
        return status, body

    async def _ping(self, server: LibreSpeedServer) -> float:
        """One request to pingURL on a warm connection, like LibreSpeed's own ping."""
        conn = await Connection.open(server.base_url, timeout_seconds=self.timeout_seconds)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await conn.request("GET", server.path(server.ping_url))
                start = time.perf_counter()
                status, _, body = await conn.request("GET", server.path(server.ping_url))
                elapsed = time.perf_counter() - start
        except TimeoutError:
            raise ProtocolError(f"{server.base_url} ping timed out", reason="stalled") from None
        finally:
            conn.abort()
        if status != 200:
            raise refused("the ping", status, body)
        return elapsed

    async def ping(self) -> float:
        if self.server is None:
            await self.connect()
        assert self.server is not None
        return await self._ping(self.server)

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        if self.server is None:
            await self.connect()
        server = self.server
        assert server is not None
        transfer = RequestLoop(
            base_url=server.base_url,
            direction=direction,
            protocol=self.protocol,
            download_path=f"{server.path(server.dl_url)}?ckSize={DOWNLOAD_CHUNKS}",
            upload_path=server.path(server.ul_url),
            upload_request_bytes=UPLOAD_REQUEST_BYTES,
            timeout_seconds=self.timeout_seconds,
        )
        return await measure_direction(transfer, options, sink)
