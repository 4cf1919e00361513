"""The `drives:` section of the configuration (one entry per cloud-drive account to probe).

    drives:
      - name: baidu-free
        kind: baidu
        group: baidu            # a free and a paid account in one group are compared
        tier: auto              # baidu asks uinfo (vip_type 0 = free)
        credentials:
          refresh_token: {file: /etc/netprobe/baidu-free.token}
          client_id: "..."
          client_secret: {env: BAIDU_CLIENT_SECRET}
        download: {path: /netprobe/1GiB.bin}
        upload: {enabled: true, size: 16MiB, path: /netprobe}
        max_bytes: 256MiB       # per probe; the monthly data budget is `budget:`

Secrets are never written in the file itself: a `Secret` names an environment variable or a
file, and files that other users can read are refused (like ssh does with private keys).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import urlsplit

from netprobe.configschema import DURATION, RATE, SIZE, Key
from netprobe.errors import ConfigError
from netprobe.secrets import Secret

DriveKind = Literal["http", "webdav", "s3", "rclone", "baidu"]
Tier = Literal["free", "paid", "auto"]

# docs/method.md §5 suggested floors.
CRITICAL_FLOOR_BYTES_PER_SECOND = 128 * 1024
WARNING_FLOOR_BYTES_PER_SECOND = 1024 * 1024
WARNING_LINE_SHARE = 0.05


@dataclass
class Credentials:
    """The account's credentials; which fields apply depends on the drive's kind.

    http/webdav: `username` + `password` (Basic) or `token` (Bearer); s3: `access_key_id` +
    `secret_access_key` (+ `region`); baidu: `access_token`, or `refresh_token` + `client_id`
    + `client_secret` (refreshed before each probe); rclone: `config_file` (rclone.conf).
    """

    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    region: str = "us-east-1"
    access_token: Secret | None = None
    refresh_token: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    config_file: str | None = None

    def secrets(self) -> list[Secret]:
        candidates = (
            self.password,
            self.token,
            self.secret_access_key,
            self.access_token,
            self.refresh_token,
            self.client_secret,
        )
        return [s for s in candidates if s is not None]


@dataclass
class DownloadConfig:
    """What to download: a path or object on the drive (for http, the URL itself)."""

    enabled: bool = True
    path: str = ""


@dataclass
class UploadConfig:
    """Upload fresh random bytes into `path` (a directory), then delete them."""

    enabled: bool = False
    size: Annotated[int, SIZE] = 16 * 1024 * 1024
    path: str = "/"


@dataclass
class Floors:
    """Policy floors (docs/method.md §5): below `critical` is unusable, below `warning` is poor.

    Defaults: critical under 128 KiB/s; warning under 1 MiB/s or under 5 % of the line's rate
    measured just before. Each probe is judged on its own; "critical on 3 probes in a row" is
    for the alert rule, which sees the floor gauges next to the rates.
    """

    critical: Annotated[float, RATE] = CRITICAL_FLOOR_BYTES_PER_SECOND
    warning: Annotated[float, RATE] = WARNING_FLOOR_BYTES_PER_SECOND
    warning_line_share: float = WARNING_LINE_SHARE

    def severity(self, bytes_per_second: float, line_bytes_per_second: float | None) -> str | None:
        """ "critical", "warning" or None for one steady rate."""
        if bytes_per_second < self.critical:
            return "critical"
        if bytes_per_second < self.warning:
            return "warning"
        if line_bytes_per_second and bytes_per_second < self.warning_line_share * (
            line_bytes_per_second
        ):
            return "warning"
        return None


@dataclass
class DriveConfig:
    """One drive account to probe.

    A download runs until its steady rate has held `duration`; a burst before it is found in
    the samples, whatever its length or size, and with none in sight the probe still waits
    `burst` (the longest burst it will wait out) before calling the rate steady. `max_bytes`
    and `time_limit` end it sooner, and the result says so. (The attributes carry `_seconds`;
    the configuration keys are `duration`, `burst`, `time_limit`.)
    """

    name: str
    kind: DriveKind
    url: str = ""
    tier: Tier = "auto"
    group: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 1
    download: DownloadConfig = field(default_factory=DownloadConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    # At most this many payload bytes per probe (all phases); "budget" is the monthly one.
    max_bytes: Annotated[int, SIZE, Key("max_bytes", old="budget")] = 256 * 1024 * 1024
    duration_seconds: Annotated[float, DURATION, Key("duration")] = 10.0
    burst_seconds: Annotated[float, DURATION, Key("burst")] = 25.0
    time_limit_seconds: Annotated[float, DURATION, Key("time_limit")] = 120.0
    connect_timeout_seconds: Annotated[float, DURATION, Key("connect_timeout")] = 15.0
    floors: Floors = field(default_factory=Floors)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ' "\\\n'):
            raise ValueError(f"drive name {self.name!r} must be non-empty without spaces or quotes")
        if not 1 <= self.connections <= 16:
            raise ValueError("connections must be between 1 and 16")
        if self.kind not in ("rclone", "baidu"):
            problem = http_url_problem(self.url) if self.url else "is missing"
            if problem:
                raise ValueError(f"the url of {self.kind} drive {self.name} {problem}")
        if self.kind == "rclone" and ":" not in self.url:
            raise ValueError("an rclone drive's url is a remote such as 'mydrive:'")
        if self.kind == "rclone" and len(self.headers) > 1:
            raise ValueError(
                "an rclone drive takes at most one header: rclone reads one from its "
                "environment, and headers never go on its command line"
            )
        if self.kind == "http" and self.upload.enabled:
            raise ValueError("http drives (share links) are download only")


def ad_hoc(kind: str, url: str, *, name: str = "adhoc") -> DriveConfig:
    """A drive from one URL naming the file: `netprobe drive --url URL --kind KIND`.

    webdav: http://host/dav/dir/file.bin; s3: http://host:9000/bucket/key (path-style);
    rclone: remote:dir/file.bin; http: the file's URL itself. Uploads go next to the file.
    """
    if kind not in ("http", "webdav", "s3", "rclone"):
        raise ConfigError(f"--kind must be http, webdav, s3 or rclone, not {kind!r}")
    if kind == "rclone":
        remote, _, path = url.rpartition(":")
        if not remote or not path:
            raise ConfigError(
                f"--url must be an rclone remote path such as gdrive:dir/file, not {url!r}"
            )
        folder = path.rpartition("/")[0]
        return DriveConfig(
            name=name,
            kind="rclone",
            url=remote + ":",
            download=DownloadConfig(path=path),
            upload=UploadConfig(path=folder or "/"),
        )
    _check_http_url(url)
    parts = urlsplit(url)
    if kind == "http":
        return DriveConfig(name=name, kind="http", url=url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path
    if kind == "s3":
        bucket, _, path = path.lstrip("/").partition("/")
        if not bucket or not path:
            raise ConfigError(
                f"--url must name a bucket and a key: http://host/bucket/key, not {url!r}"
            )
        origin += "/" + bucket
    folder = path.rpartition("/")[0]
    return DriveConfig(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        url=origin,
        download=DownloadConfig(path=path),
        upload=UploadConfig(path=folder or "/"),
    )


def ad_hoc_with(
    drive: DriveConfig,
    *,
    credentials: Credentials,
    headers: list[str],
    connections: int,
    duration_seconds: float,
    burst_seconds: float,
    upload_bytes: int | None,
) -> DriveConfig:
    """`drive` (from `ad_hoc`) with the command line's credentials, headers and sizes; checked."""
    parsed: dict[str, str] = {}
    for line in headers:
        field_name, sep, value = line.partition(":")
        if not sep or not field_name.strip():
            raise ConfigError(f"--header must be 'Name: value', not {line!r}")
        parsed[field_name.strip()] = value.strip()
    upload = drive.upload
    if upload_bytes is not None:
        upload = dataclasses.replace(upload, enabled=True, size=upload_bytes)
    try:
        # replace() runs __post_init__ again, so the combination is checked like a config file.
        return dataclasses.replace(
            drive,
            credentials=credentials,
            headers=parsed,
            connections=connections,
            duration_seconds=duration_seconds,
            burst_seconds=burst_seconds,
            upload=upload,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_http_url(url: str) -> None:
    problem = http_url_problem(url)
    if problem:
        raise ConfigError(f"--url {problem}")


def http_url_problem(url: str) -> str | None:
    """What is wrong with a drive's http(s) URL, if anything (the query is never quoted)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    shown = url.partition("?")[0]
    return f"must be an http(s) URL such as https://host/file, not {shown!r}"
