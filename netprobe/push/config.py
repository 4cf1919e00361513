"""The `push:` section of the configuration (remote_write target, credentials, outbox limits).

    push:
      url: https://mimir.example.net/api/v1/push
      interval: 60s
      external_labels: {site: berlin-3, operator: bnetza}
      bearer_token: {file: /etc/netprobe/push-token}
      tls: {ca_file: /etc/netprobe/ca.pem}

Secrets are never written in the YAML itself: a secret names the file or the environment
variable that holds it, so the configuration can be templated and shared across a fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from netprobe.configschema import DURATION
from netprobe.secrets import Secret


@dataclass
class BasicAuth:
    """HTTP basic authentication; the password is a `Secret`."""

    username: str
    password: Secret


@dataclass
class TLSConfig:
    """Client TLS: a private CA, a client certificate for mutual TLS, or (tests only) no checks."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls needs both cert_file and key_file, or neither")


@dataclass
class PushConfig:
    """Where and how to push samples, and how much to keep while the receiver is unreachable."""

    url: str
    interval: Annotated[float, DURATION] = 60.0
    external_labels: dict[str, str] = field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    bearer_token: Secret | None = None
    tls: TLSConfig | None = None
    batch_samples: int = 5000
    timeout: Annotated[float, DURATION] = 30.0
    min_backoff: Annotated[float, DURATION] = 1.0
    max_backoff: Annotated[float, DURATION] = 300.0
    max_outbox_age: Annotated[float, DURATION] = 86400.0
    max_outbox_samples: int = 2_000_000

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {self.url!r}")
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("use basic_auth or bearer_token, not both")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        if not 0 < self.min_backoff <= self.max_backoff:
            raise ValueError("min_backoff must be positive and at most max_backoff")
        if self.batch_samples < 1 or self.max_outbox_samples < 1:
            raise ValueError("batch_samples and max_outbox_samples must be at least 1")
        reserved = sorted(name for name in self.external_labels if name.startswith("__"))
        if reserved:
            raise ValueError(f"external label {reserved[0]!r} is reserved")
