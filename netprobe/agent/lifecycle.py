"""The agent's configuration over its life: the file in force, reloading it, stopping.

SIGHUP and POST /-/reload call `reload()`; a bad file keeps the running configuration (logged,
and `netprobe_config_last_reload_successful` drops to 0). Sections that need a restart are
named in the log. Whoever depends on the configuration registers `on_change`:

    life = Lifecycle(path, config, status)
    life.on_change.append(lambda config: ...)
    error = await life.reload()          # None when the new file took effect
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from netprobe.agent.metrics import AgentStatus
from netprobe.config import AgentConfig, load_config
from netprobe.errors import ConfigError
from netprobe.exporter import BasicAuth, WebConfig, load_web_config
from netprobe.i18n import _

log = logging.getLogger("netprobe.agent")


def read_web_config(config: AgentConfig) -> WebConfig | None:
    """The web config the configuration names, or None (ConfigError when it is bad)."""
    path = config.exporter.web_config
    return load_web_config(Path(path)) if path else None


class Lifecycle:
    """Holds the configuration in force, the users allowed in, and whether the agent stops."""

    def __init__(self, config_path: Path, config: AgentConfig, status: AgentStatus) -> None:
        self.config_path = config_path
        self.status = status
        self.stopping = asyncio.Event()
        self.on_change: list[Callable[[AgentConfig], None]] = []
        self.on_stop: list[Callable[[], None]] = []
        web_config = read_web_config(config)
        # TLS is set up once, when the exporter starts; users change on reload.
        self.tls = web_config.tls_server_config if web_config else None
        self.config = config
        self.auth = BasicAuth({})
        self.apply(config, web_config)

    def apply(self, config: AgentConfig, web_config: WebConfig | None) -> None:
        self.config = config
        self.status.probe_id = config.probe.id
        self.status.operator, self.status.plan = config.contract.operator, config.contract.plan
        self.status.contract = {
            (direction, kind): getattr(rates, direction)
            for kind, rates in config.contract.rates().items()
            for direction in ("download", "upload")
        }
        self.auth = BasicAuth(web_config.basic_auth_users if web_config else {})

    async def reload(self) -> str | None:
        """Re-read the configuration file; None when it took effect, else why it did not."""
        try:
            config = load_config(self.config_path)
            web_config = read_web_config(config)
        except ConfigError as exc:
            self.status.reload_successful = False
            log.error(_("configuration reload failed, keeping the running configuration: %s"), exc)
            return str(exc)
        for section, needs_restart in (
            ("store", config.store.path != self.config.store.path),
            ("exporter.listen", config.exporter.listen != self.config.exporter.listen),
            ("embedded_server", config.embedded_server != self.config.embedded_server),
            ("push", config.push != self.config.push),
        ):
            if needs_restart:
                log.warning(_("%s changed: takes effect when the agent restarts"), section)
        self.apply(config, web_config)
        for listener in self.on_change:
            listener(config)
        self.status.reload_successful = True
        self.status.reload_success_timestamp = time.time()
        log.info(_("configuration reloaded from %s"), self.config_path)
        return None

    def stop(self) -> None:
        """Ask the agent to stop (SIGTERM, SIGINT): once; a running test is aborted."""
        if self.stopping.is_set():
            return
        log.info(_("stopping"))
        self.stopping.set()
        for listener in self.on_stop:
            listener()
