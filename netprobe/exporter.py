"""The agent's HTTP face: `/metrics`, a landing page at `/`, `/-/healthy`, `/-/reload`, and
the exporter-toolkit web-config file (TLS, bcrypt basic auth).

Metrics come from `MetricSource`s read at scrape time; a scrape never starts a test. Each
area of netprobe (line tests, drives, compliance, push) owns one source; the agent feeds every
stored result to every source with `observe()`:

    registry = CollectorRegistry()
    registry.register(SourcesCollector(lambda: [line_metrics, drive_metrics]))
    runner = await start_exporter(build_app(registry, reload=agent.reload), "0.0.0.0", 9469)

The web-config file is the one Prometheus exporters share
(https://prometheus.io/docs/prometheus/latest/configuration/https/), a strict subset of it:

    tls_server_config:
      cert_file: probe.crt
      key_file: probe.key
    basic_auth_users:
      prometheus: $2y$10$...      # htpasswd -nBC 10 "" | tr -d ':' (bcrypt only)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from netprobe import __version__
from netprobe.configschema import build, read_yaml_file
from netprobe.errors import ConfigError, cannot_listen
from netprobe.events import Event

log = logging.getLogger(__name__)


class MetricSource(Protocol):
    """One area's metrics: a sink of run events (an `events.ResultObserver` is fed each
    finished record through `observe`), asked for its families at scrape time."""

    def emit(self, event: Event) -> None: ...

    def observe(self, record: dict[str, Any]) -> None: ...

    def collect(self) -> Iterable[Metric]: ...


class SourcesCollector(Collector):
    """A prometheus_client Collector over the sources the agent has now (they change on reload)."""

    def __init__(self, sources: Callable[[], Iterable[MetricSource]]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources():
            try:
                families = list(source.collect())
            except Exception:
                # One broken source must not take the line metrics down with it.
                log.exception("metric source %s failed", type(source).__name__)
                continue
            yield from families


@dataclass
class TLSServerConfig:
    """`tls_server_config:` of the web-config file."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: Literal["NoClientCert", "RequireAndVerifyClientCert"] = "NoClientCert"
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


@dataclass
class WebConfig:
    """The exporter-toolkit web-config file."""

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict)


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web-config file; file paths in it are taken from its folder."""
    file = str(path)
    data = read_yaml_file(path)
    config = build(WebConfig, data, file=file)
    for user, hashed in config.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(
                "expected a bcrypt hash ($2y$...), e.g. from htpasswd -nBC 10",
                file=file,
                key=f"basic_auth_users.{user}",
            )
    tls = config.tls_server_config
    if tls is not None:
        base = path.resolve().parent
        tls.cert_file, tls.key_file = str(base / tls.cert_file), str(base / tls.key_file)
        if tls.client_ca_file:
            tls.client_ca_file = str(base / tls.client_ca_file)
        try:
            ssl_context(tls)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the certificate: {exc}", file=file, key="tls_server_config"
            ) from None
    return config


def ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
    )
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_auth_type == "RequireAndVerifyClientCert":
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls.client_ca_file)
    return context


# bcrypt runs on threads of its own: on the loop's default pool, a burst of wrong passwords
# would queue behind it everything else that uses that pool (name resolution, file reads).
BCRYPT_THREADS = 1
# Longer than any scrape interval Prometheus is usually given, so a scraper keeps its connection.
IDLE_SECONDS = 75.0
# A request's headers arrive within this from the connection (or from the last answer).
HEADER_SECONDS = 10.0
# Checks waiting for a bcrypt thread at most; beyond, a request is refused without hashing, so a
# flood of guesses costs the probe a bounded amount of CPU and memory.
BCRYPT_QUEUE = 8
_bcrypt_pool: ThreadPoolExecutor | None = None


def _bcrypt_executor() -> ThreadPoolExecutor:
    global _bcrypt_pool
    if _bcrypt_pool is None:
        _bcrypt_pool = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt")
    return _bcrypt_pool


class BasicAuth:
    """Checks Authorization headers against bcrypt hashes.

    bcrypt is slow on purpose (tens of ms, more on a Pi); a password that verified once is
    remembered by its SHA-256 for the life of this object, as exporter-toolkit does, so a
    15-second scrape does not cost a bcrypt round each time. An unknown user costs the same
    bcrypt round as a known one (against a stand-in hash of the same cost), so answer times do
    not tell which user names exist.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._verified: set[tuple[str, bytes]] = set()
        self._waiting = 0
        # A hash of the users' own cost for unknown users: matching its all-zero checksum would
        # take a 184-bit collision, and an unknown user is refused whatever bcrypt says.
        cost = next(iter(users.values()), "$2b$10$")[4:6] if users else "10"
        self._stand_in = f"$2b${cost}$" + "." * 53

    async def allows(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        token = (user, hashlib.sha256(password.encode()).digest())
        if hashed is not None and token in self._verified:
            return True
        if self._waiting >= BCRYPT_QUEUE:
            return False
        ok = await self._checkpw(password, hashed or self._stand_in)
        if ok and hashed is not None:
            self._verified.add(token)
            return True
        return False

    async def _checkpw(self, password: str, hashed: str) -> bool:
        import bcrypt

        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            check = bcrypt.checkpw
            return bool(
                await loop.run_in_executor(
                    _bcrypt_executor(), check, password.encode(), hashed.encode()
                )
            )
        except ValueError:  # a malformed stand-in or stored hash never lets anyone in
            return False
        finally:
            self._waiting -= 1


_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>netprobe agent</title></head>
<body><h1>netprobe agent {version}</h1>
<p>Probe <b>{probe}</b>. Tests run on the agent's own schedule; a scrape only reads results.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="-/healthy">/-/healthy</a></li>
<li>POST /-/reload reloads the configuration</li></ul></body></html>
"""


def build_app(
    registry: CollectorRegistry,
    *,
    reload: Callable[[], Awaitable[str | None]] | None = None,
    probe_id: Callable[[], str] = lambda: "",
    auth: Callable[[], BasicAuth] = lambda: BasicAuth({}),
    problems: Callable[[], list[str]] = list,
) -> web.Application:
    """The exporter's routes; `reload()` returns None on success or the error message.

    Without `reload` (the lifecycle API not enabled) POST /-/reload is refused with 403; any
    other method on it is 405.

    `auth` is asked per request, so a reload that changes the users takes effect at once.
    """

    @web.middleware
    async def basic_auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if not await auth().allows(request.headers.get("Authorization")):
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="netprobe"'},
            )
        response: web.StreamResponse = await handler(request)
        return response

    async def landing(request: web.Request) -> web.Response:
        page = _LANDING.format(version=__version__, probe=html.escape(probe_id()))
        return web.Response(text=page, content_type="text/html")

    async def healthy(request: web.Request) -> web.Response:
        found = problems()
        if found:
            return web.Response(status=503, text="Unhealthy: " + "; ".join(found) + "\n")
        return web.Response(text="Healthy\n")

    async def do_reload(request: web.Request) -> web.Response:
        if reload is None:
            return web.Response(status=403, text="Lifecycle API is not enabled.\n")
        error = await reload()
        if error is not None:
            return web.Response(status=500, text=f"failed to reload config: {error}\n")
        return web.Response(text="Reloaded\n")

    app = web.Application(middlewares=[basic_auth])
    app.router.add_get("/", landing)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/-/healthy", healthy)
    app.router.add_post("/-/reload", do_reload)
    return app


class ConnectionDeadlines:
    """Closes a connection whose request does not arrive in time.

    aiohttp waits for a request's headers without a limit, so a client that sends half a
    request (or nothing) holds a socket for ever. A new connection gets `header_seconds` for
    its first request, and after each answer `idle_seconds` for the next one; a request being
    answered is never cut.
    """

    def __init__(self, header_seconds: float, idle_seconds: float) -> None:
        self.header_seconds = header_seconds
        self.idle_seconds = idle_seconds
        self._requests: dict[asyncio.BaseTransport, int] = {}
        self._busy: set[asyncio.BaseTransport] = set()
        self._timers: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}

    def watch(self, transport: asyncio.BaseTransport) -> None:
        """Called when a connection is made."""
        self._requests[transport] = 0
        self._arm(transport, self.header_seconds)

    def forget(self, transport: asyncio.BaseTransport) -> None:
        """Called when a connection is lost: its timer would otherwise hold the closed
        connection (socket, protocol, buffers) until it fires, so a burst of short connections
        would keep them all alive for `header_seconds`."""
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()
        self._requests.pop(transport, None)

    def _arm(self, transport: asyncio.BaseTransport, seconds: float) -> None:
        seen = self._requests.get(transport, 0)
        loop = asyncio.get_running_loop()
        self._timers[transport] = loop.call_later(seconds, self._check, transport, seen)

    def _check(self, transport: asyncio.BaseTransport, seen: int) -> None:
        if transport.is_closing():
            self.forget(transport)
            return
        if transport in self._busy or self._requests.get(transport, 0) != seen:
            self._arm(transport, self.idle_seconds)
            return
        self.forget(transport)
        transport.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        transport = request.transport
        if transport is None:
            return await handler(request)
        self._requests[transport] = self._requests.get(transport, 0) + 1
        self._busy.add(transport)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self._busy.discard(transport)


async def start_exporter(
    app: web.Application, host: str, port: int, tls: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Listen on the running loop; `cleanup()` the runner to stop.

    A connection gets `HEADER_SECONDS` for its request to arrive and `IDLE_SECONDS` between
    keep-alive requests (aiohttp alone waits for ever, and keeps an idle socket for an hour),
    so half-sent requests and idle sockets cannot pile up on a small device.
    """
    deadlines = ConnectionDeadlines(HEADER_SECONDS, IDLE_SECONDS)
    app.middlewares.insert(0, deadlines.middleware)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=IDLE_SECONDS
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        made(handler, transport)
        deadlines.watch(transport)

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        # The handler still has its transport here: aiohttp tells the server first.
        if handler.transport is not None:
            deadlines.forget(handler.transport)
        lost(handler, exc)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True).start()
    except OSError as exc:
        await runner.cleanup()
        raise cannot_listen(host, port, exc) from None
    return runner
