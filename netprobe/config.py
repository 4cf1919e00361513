"""The agent's configuration: one strict YAML file, every section a typed dataclass.

    config = load_config(Path("configs/demo.yml"))     # ConfigError naming file and key if wrong
    config.contract.download                           # bytes per second

Sections of the lower layers are imported from beside their code (store, drives, push,
compliance); the sections describing the probe itself (identity, contract, servers, how to
measure) and those of the agent above (schedule, budget, gates) live in this module, so every
import runs downwards (tests/test_layers.py). An unknown key anywhere is an error.
"""

from __future__ import annotations

import base64
import socket
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from netprobe.compliance.config import ComplianceConfig
from netprobe.configschema import DURATION, RATE, SIZE, Key, build, read_yaml_file
from netprobe.drives.config import DriveConfig
from netprobe.errors import ConfigError
from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import BACKENDS
from netprobe.peak import PeakHours, line_zone
from netprobe.push.config import PushConfig
from netprobe.results import Direction
from netprobe.store import Store, StoreConfig

DEFAULT_LISTEN = "0.0.0.0:9469"


@dataclass
class ExporterConfig:
    """The `exporter:` section.

    `enable_lifecycle` opens POST /-/reload (Prometheus' --web.enable-lifecycle): off by
    default, since anyone who can reach the port could otherwise make the agent re-read its
    files; SIGHUP always works.
    """

    listen: str = DEFAULT_LISTEN
    web_config: str | None = None
    enable_lifecycle: bool = False

    def __post_init__(self) -> None:
        parse_listen(self.listen)


def parse_listen(text: str) -> tuple[str, int]:
    """("host", port) from "HOST:PORT" ("[::1]:9469" for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen: expected HOST:PORT such as 0.0.0.0:9469, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass
class ProbeConfig:
    """Who this probe is and which interface is its WAN (default: the default route's)."""

    id: str = field(default_factory=socket.gethostname)
    interface: str | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        if self.timezone is not None:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"timezone: {self.timezone!r} is not a known time zone (expected e.g. Europe/Berlin)"
                ) from None

    def zone(self) -> tzinfo | None:
        """The zone peak hours are read in; None is the system's local time."""
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else None


@dataclass
class DirectionRates:
    """A download/upload pair of contracted rates."""

    download: Annotated[float, RATE]
    upload: Annotated[float, RATE]


@dataclass
class ContractConfig:
    """What the operator promised: theoretical (advertised) rates, optional floors, peak hours."""

    download: Annotated[float, RATE]
    upload: Annotated[float, RATE]
    operator: str = ""
    plan: str = ""
    account: str = ""
    service_address: str = ""
    minimum: DirectionRates | None = None
    normal: DirectionRates | None = None
    peak_hours: list[str] = field(default_factory=lambda: ["19:00-23:00"])

    def __post_init__(self) -> None:
        self.peak()

    def peak(self) -> PeakHours:
        return PeakHours.parse(self.peak_hours)

    def rates(self) -> dict[str, DirectionRates]:
        """Contract figures by kind (theoretical, minimum, normal), for gauges and reports."""
        kinds = {"theoretical": DirectionRates(self.download, self.upload)}
        if self.minimum is not None:
            kinds["minimum"] = self.minimum
        if self.normal is not None:
            kinds["normal"] = self.normal
        return kinds


@dataclass
class ServerConfig:
    """A test server; tests rotate through the list."""

    url: str
    protocol: str = "native"
    name: str = ""
    # The server's receipt key (base64, from its /.well-known/netprobe-key): receipts signed
    # by it confirm tests in reports.
    public_key: str | None = None

    def __post_init__(self) -> None:
        if self.public_key is not None and len(_b64_bytes(self.public_key)) != 32:
            raise ValueError("public_key: expected a base64 Ed25519 public key (32 bytes)")
        if self.protocol not in BACKENDS:
            raise ValueError(
                f"protocol: unknown protocol {self.protocol!r} (known: {', '.join(BACKENDS)})"
            )
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected an http:// or https:// URL, got {self.url!r}")


def _b64_bytes(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""


@dataclass
class EmbeddedServerConfig:
    """A `netprobe serve` the agent runs itself on its own loop (the offline demo, a LAN test)."""

    host: str = "127.0.0.1"
    port: int = 0
    # Pace the server like a line of these rates (all transfers together), so the demo moves
    # what a real plan would, not gigabytes per test over loopback.
    download_rate: Annotated[float | None, RATE] = None
    upload_rate: Annotated[float | None, RATE] = None


@dataclass
class MeasurementConfig:
    """How each line test is made."""

    directions: list[Literal["download", "upload"]] = field(
        default_factory=lambda: ["download", "upload"]
    )
    streams: int | None = None
    duration: Annotated[float | None, DURATION] = None
    max_bytes: Annotated[int, SIZE] = 3_000_000_000
    time_limit: Annotated[float, DURATION] = 30.0

    def engine_options(self, max_bytes: int | None = None) -> EngineOptions:
        return EngineOptions(
            streams=self.streams,
            duration_seconds=self.duration,
            max_bytes=self.max_bytes if max_bytes is None else max_bytes,
            time_limit_seconds=self.time_limit,
        )

    def test_directions(self) -> list[Direction]:
        return list(self.directions)


@dataclass
class ScheduleConfig:
    """The `schedule:` section."""

    mean_interval_seconds: Annotated[float, DURATION, Key("mean_interval")] = 3600.0
    min_interval_seconds: Annotated[float, DURATION, Key("min_interval")] = 600.0
    max_interval_seconds: Annotated[float, DURATION, Key("max_interval")] = 3 * 3600.0
    startup_delay_seconds: Annotated[float, DURATION, Key("startup_delay")] = 60.0

    def __post_init__(self) -> None:
        low, mean, high = (
            self.min_interval_seconds,
            self.mean_interval_seconds,
            self.max_interval_seconds,
        )
        if not 0 < low <= mean <= high:
            raise ValueError(
                "expected 0 < min_interval <= mean_interval <= max_interval "
                f"(got {low:g} s, {mean:g} s, {high:g} s)"
            )


@dataclass
class BudgetConfig:
    """The `budget:` section; no `monthly` means an unmetered line."""

    monthly: Annotated[int | None, SIZE] = None
    reset_day: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.reset_day <= 28:
            raise ValueError(
                f"reset_day must be 1-28 (a day every month has), not {self.reset_day}"
            )


@dataclass
class GatesConfig:
    """The `gates:` section; a threshold of null switches that gate off."""

    cross_traffic_threshold: Annotated[float | None, RATE] = 25_000.0
    cpu_threshold_percent: float | None = 30.0
    sample_duration: Annotated[float, DURATION] = 2.0
    recheck_interval: Annotated[float, DURATION] = 30.0
    max_hold: Annotated[float, DURATION] = 900.0
    require_wired: bool = True

    def __post_init__(self) -> None:
        if self.sample_duration <= 0 or self.recheck_interval <= 0:
            raise ValueError("sample_duration and recheck_interval must be above 0")


@dataclass
class AgentConfig:
    """The whole file."""

    contract: ContractConfig
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    servers: list[ServerConfig] = field(default_factory=list)
    embedded_server: EmbeddedServerConfig | None = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    drives: list[DriveConfig] = field(default_factory=list)
    push: PushConfig | None = None
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)

    def line_zone(self) -> ZoneInfo:
        """The one zone peak flags, verdicts, measurement days and the budget month are read in:
        `compliance.timezone`, else `probe.timezone`, else the system's, else UTC."""
        return line_zone(self.compliance.timezone, self.probe.timezone)

    def located_compliance(self) -> ComplianceConfig:
        """The `compliance:` section with its time zone resolved as `line_zone()` does."""
        return self.compliance.located(self.probe.timezone)


def load_config(path: Path, *, measuring: bool = True) -> AgentConfig:
    """Read and check a configuration file; relative paths in it are taken from its folder.

    `measuring=False` is for reading it only for its contract and store (`netprobe report`):
    such a file needs no `servers:`.
    """
    file = str(path)
    data = read_yaml_file(path)
    config = build(AgentConfig, data, file=file)
    if measuring and not config.servers and config.embedded_server is None:
        raise ConfigError(
            "servers: expected at least one server (or an embedded_server)", file=file
        )
    base = path.resolve().parent
    config.store.path = str(base / config.store.path)
    if config.store.key_file is not None:
        config.store.key_file = str(base / config.store.key_file)
    if config.exporter.web_config is not None:
        config.exporter.web_config = str(base / config.exporter.web_config)
    return config


def check_config_file(path: Path) -> AgentConfig:
    """`netprobe config check`: the configuration and the web config it names, or ConfigError."""
    from netprobe.exporter import load_web_config

    loaded = load_config(path)
    if loaded.exporter.web_config:
        load_web_config(Path(loaded.exporter.web_config))
    return loaded


def drives_named(path: Path | None, name: str | None) -> list[DriveConfig]:
    """The drives of the configuration at `path`: all, or the one called `name`."""
    if path is None:
        raise ConfigError("give --url URL --kind KIND, or --config FILE [NAME]")
    drives = [d for d in load_config(path).drives if name in (None, d.name)]
    if not drives:
        raise ConfigError(
            f"no drive named {name!r}" if name else "no drives configured", file=str(path)
        )
    return drives


def open_named_store(
    config: Path | None, store: Path | None, *, create: bool = False
) -> tuple[Store, tzinfo]:
    """The store named by `--store PATH` or by the configuration's `store.path`, and the zone
    its times are shown in (the probe's `timezone`, else this machine's). Only with `create`
    is a store that does not exist yet made."""
    zone: tzinfo | None = None
    key_path: Path | None = None
    if store is not None:
        path = store
    elif config is not None:
        loaded = load_config(config, measuring=False)
        path, zone = Path(loaded.store.path), loaded.probe.zone()
        key_path = Path(loaded.store.key_file) if loaded.store.key_file else None
    else:
        raise ConfigError("give --config FILE or --store PATH")
    if not path.exists() and not create:
        raise ConfigError(f"no results store at {path}")
    local = datetime.now().astimezone().tzinfo
    return Store(path, key_path), zone or local or UTC
