"""The agent's HTTP face: the metrics exporter (with its TLS and users) and the embedded server.

face = HttpFace(registry)
exporter = await face.start_exporter(sources, life, listen="0.0.0.0:9469")
runner, server = await face.start_embedded_server(config.embedded_server)   # a ServerConfig

The exporter runs on netprobe's own small HTTP server; aiohttp is imported only for the
embedded server, so an agent without one does not carry it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector

from netprobe.agent.lifecycle import Lifecycle
from netprobe.config import EmbeddedServerConfig, ServerConfig, parse_listen
from netprobe.exporter import MetricSource, SourcesCollector, build_app, ssl_context, start_exporter
from netprobe.httpserver import HttpServer
from netprobe.i18n import _

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("netprobe.agent")


class HttpFace:
    """Serves /metrics, /-/healthy and /-/reload from a registry of the agent's sources."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    async def start_exporter(
        self, sources: Callable[[], Iterable[MetricSource]], life: Lifecycle, listen: str
    ) -> HttpServer:
        self.registry.register(SourcesCollector(sources))
        ProcessCollector(registry=self.registry)
        app = build_app(
            self.registry,
            reload=life.reload if life.config.exporter.enable_lifecycle else None,
            probe_id=lambda: life.config.probe.id,
            auth=lambda: life.auth,
            problems=life.status.problems,
        )
        tls = ssl_context(life.tls) if life.tls else None
        host, port = parse_listen(listen)
        server = await start_exporter(app, host, port, tls)
        scheme = "https" if tls else "http"
        log.info(_("metrics on %s://%s:%d/metrics"), scheme, host, server.port)
        return server

    async def start_embedded_server(
        self, embedded: EmbeddedServerConfig
    ) -> tuple[web.AppRunner, ServerConfig]:
        """A `netprobe serve` on the agent's own loop, and the server entry tests use for it."""
        from netprobe.serve.app import bound_port, start_server
        from netprobe.serve.state import ServerLimits

        limits = ServerLimits(
            download_rate_bytes_per_second=embedded.download_rate,
            upload_rate_bytes_per_second=embedded.upload_rate,
        )
        runner = await start_server(embedded.host, embedded.port, limits)
        url = f"http://{embedded.host}:{bound_port(runner)}"
        log.info(_("embedded test server on %s"), url)
        return runner, ServerConfig(url, "native", "embedded")
