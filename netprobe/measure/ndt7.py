"""ndt7 (M-Lab), client side: one WebSocket per subtest, subprotocol net.measurementlab.ndt.v7.

A server is given directly (`ws://host:port` or `wss://host`) or found with M-Lab's locate v2
API (`auto`, or the URL of a locate endpoint): its answer lists machines with one-use URLs per
subtest; the machine with the lowest TCP connect time that accepts is used (select.py).

Download is counted as binary messages arrive; upload is taken from the server's measurement
messages (AppInfo.NumBytes over AppInfo.ElapsedTime): the receiver's counters. ndt7 is one
stream and a server ends a subtest after about 10 s, so the engine runs one stream with a
warm-up of at most 2 s and a window of at most 7 s. With a data budget of at most 250 MB the
download asks the server for `early_exit=250` (the only value the spec allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from netprobe.errors import MeasurementError, ProtocolError, ServerRefused, TransportError
from netprobe.events import Sink
from netprobe.measure.engine import ByteCounter, EngineOptions, measure_direction
from netprobe.measure.latency import tcp_connect_rtt
from netprobe.measure.select import choose
from netprobe.results import Direction, DirectionResult, Server, StreamSeries

SUBPROTOCOL = "net.measurementlab.ndt.v7"
LOCATE_V2 = "https://locate.measurementlab.net/v2/nearest/ndt/ndt7"
EARLY_EXIT_BYTES = 250_000_000
MAX_WARMUP_SECONDS = 2.0
MAX_WINDOW_SECONDS = 7.0
_MIN_MESSAGE_BYTES = 1 << 13
_MAX_MESSAGE_BYTES = 1 << 20
_MAX_RECEIVE_BYTES = (1 << 24) + 1024


@dataclass(frozen=True)
class Machine:
    """One ndt7 server: where its download and upload subtests are."""

    name: str
    download_url: str
    upload_url: str

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.download_url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)


def machine_for(url: str) -> Machine:
    """A machine from a ws(s):// base URL (paths /ndt/v7/download and /ndt/v7/upload)."""
    base = url.rstrip("/")
    return Machine(
        name=base, download_url=f"{base}/ndt/v7/download", upload_url=f"{base}/ndt/v7/upload"
    )


def parse_locate(answer: Any, source: str) -> list[Machine]:
    """Machines from a locate v2 answer, preferring wss:// URLs; a clear error when unusable."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not results:
        # M-Lab answers 200 with no results when it is out of capacity.
        raise ServerRefused(
            f"{source} offered no ndt7 server (out of capacity?)", reason="no_server"
        )
    if not isinstance(results, list):
        raise ProtocolError(f"{source}: 'results' is not a list", reason="protocol")
    machines = []
    for entry in results:
        urls = entry.get("urls") if isinstance(entry, dict) else None
        if not isinstance(urls, dict):
            raise ProtocolError(f"{source}: a result has no 'urls'", reason="protocol")
        for scheme in ("wss", "ws"):
            down = urls.get(f"{scheme}:///ndt/v7/download")
            up = urls.get(f"{scheme}:///ndt/v7/upload")
            if isinstance(down, str) and isinstance(up, str):
                machines.append(Machine(str(entry.get("machine", down)), down, up))
                break
        else:
            raise ProtocolError(
                f"{source}: a result lacks ndt7 download/upload URLs", reason="protocol"
            )
    return machines


class Ndt7Backend:
    """Measures against an ndt7 server, given or found through M-Lab's locate v2 API."""

    protocol = "ndt7"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        self.url = LOCATE_V2 if url in ("", "auto") else url
        scheme = urlsplit(self.url).scheme
        if scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"ndt7 server must be ws(s)://HOST, a locate URL or auto, not {url!r}")
        self.timeout_seconds = timeout_seconds
        self.machine: Machine | None = None

    async def connect(self) -> Server:
        if self.url.startswith(("ws://", "wss://")):
            machine = machine_for(self.url)
            await self._probe(machine)
        else:
            machines = parse_locate(await self._locate(), self.url)
            machine, _ = await choose(
                machines, self._probe, self._accept, name=lambda m: m.name, pings=1
            )
        self.machine = machine
        return Server(
            url=machine.download_url.split("?")[0], name=machine.name, protocol=self.protocol
        )

    async def _locate(self) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        headers = {"User-Agent": "netprobe", "Accept": "application/json"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
                session.get(self.url) as response,
            ):
                if response.status != 200:
                    raise ServerRefused(
                        f"{self.url} answered HTTP {response.status}",
                        reason=f"http_{response.status}",
                    )
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(
                f"cannot reach {self.url}: {exc or 'timeout'}", reason="unreachable"
            ) from None
        except ValueError:
            raise ProtocolError(f"{self.url} did not answer JSON", reason="protocol") from None

    async def _probe(self, machine: Machine) -> float:
        host, port = machine.host_port
        return await tcp_connect_rtt(host, port, self.timeout_seconds)

    async def _accept(self, machine: Machine) -> Machine:
        return machine

    async def ping(self) -> float:
        if self.machine is None:
            await self.connect()
        assert self.machine is not None
        return await self._probe(self.machine)

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        if self.machine is None:
            await self.connect()
        assert self.machine is not None
        url = self.machine.download_url if direction == "download" else self.machine.upload_url
        if direction == "download" and options.max_bytes <= EARLY_EXIT_BYTES:
            url += ("&" if "?" in url else "?") + "early_exit=250"
        window = min(options.duration_seconds or MAX_WINDOW_SECONDS, MAX_WINDOW_SECONDS)
        single = dataclasses.replace(
            options,
            streams=1,
            warmup_max_seconds=min(options.warmup_max_seconds, MAX_WARMUP_SECONDS),
            warmup_min_seconds=min(options.warmup_min_seconds, MAX_WARMUP_SECONDS),
            duration_seconds=window,
        )
        return await measure_direction(
            _Ndt7Transfer(url, direction, self.timeout_seconds), single, sink
        )


class _Ndt7Transfer:
    protocol = "ndt7"

    def __init__(self, url: str, direction: Direction, timeout_seconds: float) -> None:
        self.url = url
        self.direction = direction
        self.timeout_seconds = timeout_seconds
        self.measurements: list[dict[str, Any]] = []

    async def stream(
        self, index: int, counter: ByteCounter, stop: asyncio.Event
    ) -> StreamSeries | None:
        origin = time.monotonic()
        timeout = aiohttp.ClientWSTimeout(ws_close=2.0)
        try:
            async with aiohttp.ClientSession() as session:
                try:
                    async with asyncio.timeout(self.timeout_seconds):
                        ws = await session.ws_connect(
                            self.url,
                            protocols=(SUBPROTOCOL,),
                            max_msg_size=_MAX_RECEIVE_BYTES,
                            timeout=timeout,
                            autoping=True,
                        )
                except aiohttp.WSServerHandshakeError as exc:
                    raise ServerRefused(
                        f"the ndt7 server refused the {self.direction} (HTTP {exc.status})",
                        reason=f"http_{exc.status}",
                    ) from None
                except TimeoutError:
                    raise TransportError(
                        f"no WebSocket from {self.url.split('?')[0]} within {self.timeout_seconds:g} s",
                        reason="timeout",
                    ) from None
                async with ws:
                    if ws.protocol != SUBPROTOCOL:
                        raise ProtocolError(
                            "the server did not select the ndt7 subprotocol", reason="protocol"
                        )
                    connected = time.monotonic() - origin
                    if self.direction == "download":
                        await self._download(ws, counter, stop)
                        return None
                    return await self._upload(ws, index, counter, stop, connected)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise TransportError(f"ndt7 {self.direction}: {exc}", reason="reset") from None

    def _measurement(self, text: str) -> dict[str, Any]:
        try:
            message = json.loads(text)
            app_info = message["AppInfo"]
            int(app_info["NumBytes"]), int(app_info["ElapsedTime"])
        except (ValueError, KeyError, TypeError):
            raise ProtocolError(
                "the server sent a measurement message that is not ndt7 JSON", reason="protocol"
            ) from None
        self.measurements.append(message)
        return message

    async def _download(
        self, ws: aiohttp.ClientWebSocketResponse, counter: ByteCounter, stop: asyncio.Event
    ) -> None:
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                receive = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait(
                    {receive, stopped}, return_when=asyncio.FIRST_COMPLETED
                )
                if receive not in done:
                    receive.cancel()
                    await asyncio.gather(receive, return_exceptions=True)
                    return
                message = receive.result()
                if message.type == aiohttp.WSMsgType.BINARY:
                    counter.add(len(message.data))
                elif message.type == aiohttp.WSMsgType.TEXT:
                    self._measurement(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    raise TransportError(f"ndt7 download broke: {message.data}", reason="reset")
                else:
                    return  # the server ended the subtest
        finally:
            stopped.cancel()

    async def _upload(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        index: int,
        counter: ByteCounter,
        stop: asyncio.Event,
        connected: float,
    ) -> StreamSeries:
        series = StreamSeries(stream=index)

        async def read_counters() -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    app_info = self._measurement(message.data)["AppInfo"]
                    series.t_seconds.append(connected + int(app_info["ElapsedTime"]) / 1e6)
                    series.bytes.append(int(app_info["NumBytes"]))

        reader = asyncio.create_task(read_counters())
        payload = os.urandom(_MAX_MESSAGE_BYTES)
        size = _MIN_MESSAGE_BYTES
        try:
            while not stop.is_set() and not reader.done() and not ws.closed:
                await ws.send_bytes(payload[:size])
                counter.add(size)
                if size < _MAX_MESSAGE_BYTES and size <= counter.bytes / 16:
                    size *= 2
            if reader.done():
                reader.result()  # a malformed measurement fails the test here
            with contextlib.suppress(TimeoutError, MeasurementError, aiohttp.ClientError):
                async with asyncio.timeout(2.0):
                    await ws.close()
                    await reader
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if not series.t_seconds:
            raise ProtocolError("the ndt7 server sent no upload measurements", reason="protocol")
        return series
