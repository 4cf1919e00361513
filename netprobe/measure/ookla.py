"""Ookla's network through the `speedtest-cli` package, run in an executor thread.

The package's figures are its own: total bytes over wall time, no warm-up, 8 download
threads on four URLs per image size, upload counted by the sender. They are mapped into the
result model as such (`Method(aggregate="total_over_wall_time")`, `measured_at` "receiver"
for the download, "sender" for the upload), so a report never mistakes them for the
engine's steady rate. The data budget is kept by dropping
the largest image and upload sizes from the package's plan before it runs.

The server is chosen by the `server` string: "auto" (speedtest.net's list, best by latency),
server ids to pin ("1234,5678") and to exclude ("-4321"), or a URL of a host that answers
speedtest.net's configuration and server-list paths itself (`netprobe serve` does; see
netprobe/serve/speedtest.py), which is then the only server.

Run the real speedtest-cli command line against such a host (everything after `--` is
speedtest-cli's own arguments):

    python -m netprobe.measure.ookla http://HOST:PORT -- --mini http://HOST:PORT/ --json
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import speedtest

from netprobe.errors import (
    BudgetExceeded,
    MeasurementError,
    ProtocolError,
    ServerRefused,
    TransportError,
)
from netprobe.events import Event, Sink
from netprobe.measure.engine import EngineOptions
from netprobe.measure.http import Endpoint
from netprobe.measure.latency import tcp_connect_rtt
from netprobe.results import Direction, DirectionResult, Method, Server
from netprobe.units import format_size

SPEEDTEST_NET = "https://www.speedtest.net"
# The hosts the package fetches its configuration and server list from.
SPEEDTEST_NET_HOSTS = frozenset({"www.speedtest.net", "c.speedtest.net"})
METHOD_WINDOW = "speedtest-cli: 10 s per direction from the configuration, images of growing size"
# speedtest-cli times an upload by the bytes its threads handed to the socket: data still queued
# in buffers counts as sent, so on a slow or bloated uplink the figure runs high.
SENDER_SIDE = "; sender-side figure: bytes handed to the socket over wall time, not what arrived"


class SpeedtestNetRedirect(urllib.request.BaseHandler):
    """Sends the package's requests for speedtest.net to another host (a local server).

    Runs before urllib's own request processing (lower handler_order), so the Host header
    and the connection follow the new URL; https becomes whatever scheme the target has.
    """

    handler_order = 100

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        parts = urlsplit(request.full_url)
        if parts.hostname in SPEEDTEST_NET_HOSTS:
            query = f"?{parts.query}" if parts.query else ""
            request.full_url = f"{self.base_url}{parts.path}{query}"
        return request

    https_request = http_request


def redirecting_opener(base_url: str) -> Callable[..., urllib.request.OpenerDirector]:
    """speedtest.build_opener, with speedtest.net's hosts answered by `base_url`."""
    original = speedtest.build_opener

    def build_opener(*args: Any, **kwargs: Any) -> urllib.request.OpenerDirector:
        opener = original(*args, **kwargs)
        opener.add_handler(SpeedtestNetRedirect(base_url))
        return opener

    return build_opener


class _RedirectedSpeedtest(speedtest.Speedtest):
    def __init__(self, speedtest_net_url: str, **kwargs: Any) -> None:
        self._speedtest_net_url = speedtest_net_url
        super().__init__(**kwargs)

    def get_config(self) -> Any:
        # The constructor builds the opener, then fetches the configuration through it.
        if not any(isinstance(h, SpeedtestNetRedirect) for h in self._opener.handlers):
            self._opener.add_handler(SpeedtestNetRedirect(self._speedtest_net_url))
        return super().get_config()


def redirected_speedtest(
    speedtest_net_url: str, *, secure: bool = False, timeout_seconds: float = 10
) -> speedtest.Speedtest:
    """A speedtest.Speedtest whose configuration and server list come from `speedtest_net_url`.

    Everything else is the unmodified package: get_servers([1]), get_best_server(),
    set_mini_server(url), download(), upload(), results.dict().
    """
    return _RedirectedSpeedtest(speedtest_net_url, secure=secure, timeout=timeout_seconds)


@dataclass(frozen=True)
class ServerChoice:
    """Which Ookla servers may be used: pinned ids, excluded ids, or one host of our own."""

    pin: tuple[int, ...] = ()
    exclude: tuple[int, ...] = ()
    speedtest_net_url: str = SPEEDTEST_NET

    @classmethod
    def parse(cls, text: str) -> ServerChoice:
        """Parse "auto", "1234,5678,-4321" (pin two, exclude one) or a URL playing speedtest.net."""
        text = text.strip()
        if text.startswith(("http://", "https://")):
            return cls(speedtest_net_url=text.rstrip("/"))
        pin: list[int] = []
        exclude: list[int] = []
        for token in filter(None, (t.strip() for t in text.split(","))):
            if token == "auto":
                continue
            target = exclude if token.startswith("-") else pin
            try:
                target.append(int(token.lstrip("-")))
            except ValueError:
                raise ValueError(
                    f"Ookla server must be auto, server ids (1234, -1234 to exclude) "
                    f"or a URL, not {token!r}"
                ) from None
        return cls(tuple(pin), tuple(exclude))


class OoklaBackend:
    """Measures against Ookla's servers with the speedtest-cli package (HTTPS by default).

    backend = OoklaBackend("auto")              # or "1234" to pin, "-1234" to exclude
    backend = OoklaBackend("http://lab:8080")   # netprobe serve plays speedtest.net
    """

    protocol = "ookla"

    def __init__(self, url: str, *, secure: bool = True, timeout_seconds: float = 10.0) -> None:
        self.choice = ServerChoice.parse(url)
        self.url = url
        self.secure = secure
        self.timeout_seconds = timeout_seconds
        self._speedtest: speedtest.Speedtest | None = None

    async def connect(self) -> Server:
        """Fetch the configuration and server list, pick the server with the lowest latency."""
        chosen = await asyncio.to_thread(_call, self._choose)
        self._speedtest = chosen
        best = chosen.best
        self.url = str(best["url"])
        return Server(
            url=self.url,
            name=f"{best.get('sponsor', '')} ({best.get('name', '')}) id {best.get('id', '')}",
            protocol=self.protocol,
            version=f"speedtest-cli {speedtest.__version__}",
        )

    def _choose(self) -> speedtest.Speedtest:
        if self.choice.speedtest_net_url == SPEEDTEST_NET:
            st = speedtest.Speedtest(secure=self.secure, timeout=self.timeout_seconds)
        else:
            st = redirected_speedtest(
                self.choice.speedtest_net_url,
                secure=self.secure,
                timeout_seconds=self.timeout_seconds,
            )
        st.get_servers(list(self.choice.pin), list(self.choice.exclude))
        if not st.servers:
            raise ProtocolError(
                "the Ookla server list is empty or could not be fetched", reason="no_server"
            )
        st.get_best_server()
        if st.best["latency"] >= 3600:
            # The package scores an unreachable server as 3600 s instead of failing.
            raise TransportError(
                f"no Ookla server answered its latency test ({st.best['url']})",
                reason="unreachable",
            )
        return st

    async def ping(self) -> float:
        """One TCP connect to the chosen server: a round trip, measurable while a test runs.

        (The package's own figure, kept in the server list as `latency`, is the sum of three
        connect-and-GET times over six: about one round trip too, but only taken once.)
        """
        if self._speedtest is None:
            await self.connect()
        endpoint = Endpoint.parse(self.url)
        return await tcp_connect_rtt(endpoint.host, endpoint.port, self.timeout_seconds)

    async def measure(
        self, direction: Direction, options: EngineOptions, sink: Sink | None = None
    ) -> DirectionResult:
        """One direction the package's way; its figure is total bytes over wall time."""
        method = Method(
            protocol=self.protocol,
            engine=f"speedtest-cli/{speedtest.__version__}",
            streams=options.streams or 0,
            warmup_rule="none",
            window_rule=METHOD_WINDOW + ("" if direction == "download" else SENDER_SIDE),
            aggregate="total_over_wall_time",
            measured_at="receiver" if direction == "download" else "sender",
        )
        if sink is not None:
            sink.emit(Event(kind="started", direction=direction))
        try:
            if self._speedtest is None:
                await self.connect()
            st = self._speedtest
            assert st is not None
            fit_budget(st.config, direction, options.max_bytes)
            start = time.monotonic()
            if direction == "download":
                bits_per_second = await asyncio.to_thread(
                    _call, st.download, threads=options.streams
                )
                moved = int(st.results.bytes_received)
            else:
                bits_per_second = await asyncio.to_thread(_call, st.upload, threads=options.streams)
                moved = int(st.results.bytes_sent)
            elapsed = time.monotonic() - start
        except MeasurementError as exc:
            if sink is not None:
                sink.emit(Event(kind="error", direction=direction, message=str(exc)))
            return DirectionResult.failed(direction, exc.reason, str(exc), method)
        if moved <= 0 or bits_per_second <= 0:
            # The package reports a failed transfer as 0 bit/s; we keep it as a failure.
            return DirectionResult.failed(
                direction, "no_data", f"speedtest-cli moved no data for the {direction}", method
            )
        threads = options.streams or st.config["threads"][direction]
        method.streams = threads
        result = DirectionResult(
            direction=direction,
            ok=True,
            bytes_per_second=bits_per_second / 8,
            bytes=moved,
            window_seconds=moved * 8 / bits_per_second,
            duration_seconds=elapsed,
            total_bytes=moved,
            streams=threads,
            method=method,
        )
        if sink is not None:
            sink.emit(
                Event(
                    kind="finished",
                    direction=direction,
                    t_seconds=elapsed,
                    bytes_per_second=result.bytes_per_second,
                    total_bytes=moved,
                    streams=threads,
                    detail=result,
                )
            )
        return result


def planned_bytes(config: dict[str, Any], direction: Direction) -> int:
    """What the package will move at most for a direction, from its configuration.

    Download images are taken as 2·N² bytes (the size netprobe serve sends, close to the
    real random{N}x{N}.jpg files); upload sizes are exact.
    """
    count = config["counts"][direction]
    sizes = config["sizes"][direction]
    if direction == "download":
        return sum(2 * n * n for n in sizes) * count
    return int(sum(sizes) * count)


def fit_budget(config: dict[str, Any], direction: Direction, max_bytes: int) -> None:
    """Drop the largest request sizes until the plan fits the data budget (or fail)."""
    sizes = config["sizes"][direction]
    while sizes and planned_bytes(config, direction) > max_bytes:
        sizes.pop()
    if not sizes:
        raise BudgetExceeded(
            f"the byte budget of {format_size(max_bytes)} is smaller than speedtest-cli's "
            f"smallest {direction}; raise --max-bytes"
        )
    if direction == "upload":
        # The package waits for exactly upload_max uploads to finish.
        config["upload_max"] = config["counts"]["upload"] * len(sizes)


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a speedtest-cli call, turning its exceptions into netprobe's."""
    try:
        return function(*args, **kwargs)
    except speedtest.ConfigRetrievalError as exc:
        raise TransportError(
            f"cannot fetch the Ookla configuration: {_first_line(exc)}", reason="config_unreachable"
        ) from None
    except (speedtest.SpeedtestConfigError, speedtest.SpeedtestServersError) as exc:
        raise ProtocolError(
            f"malformed Ookla answer: {_first_line(exc)}", reason="protocol"
        ) from None
    except speedtest.NoMatchedServers:
        raise ServerRefused(
            "no Ookla server matches the pinned/excluded ids", reason="no_server"
        ) from None
    except speedtest.SpeedtestBestServerFailure as exc:
        raise TransportError(
            f"no Ookla server answered: {_first_line(exc)}", reason="unreachable"
        ) from None
    except speedtest.SpeedtestException as exc:
        raise ProtocolError(
            f"speedtest-cli failed: {_first_line(exc)}", reason="protocol"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise TransportError(
            f"speedtest-cli failed: {_first_line(exc)}", reason="unreachable"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def main(argv: Sequence[str]) -> None:
    """`python -m netprobe.measure.ookla BASE_URL -- ARGS`: speedtest-cli's CLI against BASE_URL."""
    args = list(argv)
    if not args or args[0].startswith("-"):
        sys.exit("usage: python -m netprobe.measure.ookla BASE_URL -- [speedtest-cli arguments]")
    base_url, rest = args[0], args[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    speedtest.build_opener = redirecting_opener(base_url)
    sys.argv = ["speedtest-cli", *rest]
    speedtest.main()


if __name__ == "__main__":
    main(sys.argv[1:])
