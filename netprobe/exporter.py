"""The agent's HTTP face: `/metrics`, a landing page at `/`, `/-/healthy`, `/-/reload`, and
the exporter-toolkit web-config file (TLS, bcrypt basic auth).

Metrics come from `MetricSource`s read at scrape time; a scrape never starts a test. Each
area of netprobe (line tests, drives, compliance, push) owns one source; the agent feeds every
stored result to every source with `observe()`:

    registry = CollectorRegistry()
    registry.register(SourcesCollector(lambda: [line_metrics, drive_metrics]))
    server = await start_exporter(build_app(registry, reload=agent.reload), "0.0.0.0", 9469)

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
import gzip
import hashlib
import html
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from netprobe import __version__
from netprobe.configschema import build, read_yaml_file
from netprobe.errors import ConfigError
from netprobe.events import Event
from netprobe.httpserver import App, HttpLimits, HttpServer, Request, Response

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
# A new connection's request line arrives within this, and every request's head within this
# of its first line.
HEADER_SECONDS = 10.0
# Open connections at most, in all and from one address: Prometheus keeps one; the rest are
# people, health checks and floods, which the second bound keeps from taking every place.
CONNECTIONS = 128
CONNECTIONS_PER_ADDRESS = 8
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
) -> App:
    """The exporter's routes; `reload()` returns None on success or the error message.

    Without `reload` (the lifecycle API not enabled) POST /-/reload is refused with 403; any
    other method on it is 405.

    `auth` is asked per request, before the route is looked up (so an unknown path tells a
    stranger nothing), and a reload that changes the users takes effect at once.
    """

    async def landing(request: Request) -> Response:
        page = _LANDING.format(version=__version__, probe=html.escape(probe_id()))
        return Response(200, page, "text/html; charset=utf-8")

    async def metrics(request: Request) -> Response:
        # The content negotiation and compression prometheus_client's own servers offer.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        names = request.query.get("name[]")
        body = encoder(registry.restricted_registry(names) if names else registry)
        if not gzip_accepted(request.headers.get("accept-encoding", "")):
            return Response(200, body, content_type)
        return Response(200, gzip.compress(body), content_type, {"Content-Encoding": "gzip"})

    async def healthy(request: Request) -> Response:
        found = problems()
        if found:
            return Response(503, "Unhealthy: " + "; ".join(found) + "\n")
        return Response(200, "Healthy\n")

    async def do_reload(request: Request) -> Response:
        if reload is None:
            return Response(403, "Lifecycle API is not enabled.\n")
        error = await reload()
        if error is not None:
            return Response(500, f"failed to reload config: {error}\n")
        return Response(200, "Reloaded\n")

    routes: dict[str, dict[str, App]] = {
        "/": {"GET": landing},
        "/metrics": {"GET": metrics},
        "/-/healthy": {"GET": healthy},
        "/-/reload": {"POST": do_reload},
    }

    async def app(request: Request) -> Response:
        if not await auth().allows(request.headers.get("authorization")):
            unauthorized = {"WWW-Authenticate": 'Basic realm="netprobe"'}
            return Response(401, "Unauthorized\n", headers=unauthorized)
        methods = routes.get(request.path)
        if methods is None:
            return Response(404, "Not Found\n")
        handler = methods.get("GET" if request.method == "HEAD" else request.method)
        if handler is None:
            allowed = ", ".join(["HEAD", *methods] if "GET" in methods else methods)
            return Response(405, "Method Not Allowed\n", headers={"Allow": allowed})
        return await handler(request)

    return app


async def start_exporter(
    app: App, host: str, port: int, tls: ssl.SSLContext | None = None
) -> HttpServer:
    """Listen on the running loop; `close()` the server to stop.

    A connection gets `HEADER_SECONDS` for its request to arrive and `IDLE_SECONDS` between
    keep-alive requests, so half-sent requests and idle sockets cannot pile up on a small
    device; at most `CONNECTIONS` are open at once, `CONNECTIONS_PER_ADDRESS` from one address.
    """
    limits = HttpLimits(
        header_seconds=HEADER_SECONDS,
        idle_seconds=IDLE_SECONDS,
        connections=CONNECTIONS,
        connections_per_address=CONNECTIONS_PER_ADDRESS,
    )
    return await HttpServer.start(app, host, port, limits, tls)
