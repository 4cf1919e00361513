"""The one exception tree of netprobe; every message is meant to be shown to a user as is.

    NetprobeError                 anything netprobe raises on purpose
    ├── ConfigError               a file or option is wrong: names the file, the key, what was expected
    ├── MeasurementError          a test could not produce a valid figure
    │   ├── TransportError        unreachable, refused, reset, stalled, timed out
    │   ├── ProtocolError         the peer is not speaking the protocol (e.g. not a netprobe server)
    │   ├── ServerRefused         the peer answered with a refusal (HTTP 4xx/5xx, quota, auth)
    │   └── BudgetExceeded        the data budget does not allow the test
    └── StoreError                the results store cannot be opened or written

Each error carries a short `reason` (snake_case) used as a metric label and stored with failed
results, so a failure is recorded as a failure with a reason, never as a zero rate.
"""

from __future__ import annotations


class NetprobeError(Exception):
    """Base class; `reason` is a stable, low-cardinality code for metrics and the store."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(NetprobeError):
    """A configuration file or command-line option is invalid."""

    reason = "config"

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.key = key


class MeasurementError(NetprobeError):
    """A measurement failed."""

    reason = "failed"


class TransportError(MeasurementError):
    """The connection could not be made or broke (reason: unreachable, refused, reset, stalled, timeout)."""

    reason = "transport"


class ProtocolError(MeasurementError):
    """The peer answered, but not in the protocol expected."""

    reason = "protocol"


class ServerRefused(MeasurementError):
    """The peer refused the request (reason: http_4xx, http_5xx, auth, quota, concurrency)."""

    reason = "refused"


class BudgetExceeded(MeasurementError):
    """The data budget does not allow this test."""

    reason = "budget"


class StoreError(NetprobeError):
    """The results store cannot be opened or written."""

    reason = "store"


def cannot_listen(host: str, port: int, exc: OSError) -> ConfigError:
    """One clear line for a failed bind, e.g. the port is taken, instead of a raw errno."""
    import errno

    reasons = {
        errno.EADDRINUSE: "the port is already in use (another netprobe or server?)",
        errno.EACCES: "permission denied (ports below 1024 need root)",
        errno.EADDRNOTAVAIL: "this machine has no such address",
    }
    reason = reasons.get(exc.errno or 0, (exc.strerror or str(exc)).lower())
    return ConfigError(f"cannot listen on {host}:{port}: {reason}")
