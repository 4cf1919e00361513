"""The one exception tree of netprobe; every message is meant to be shown to a user as is.

    NetprobeError                 anything netprobe raises on purpose
    ├── ConfigError               a file or option is wrong: names the file, the key, what was expected
    │   └── UnitError             a rate, size or duration that does not parse (also a ValueError)
    ├── MeasurementError          a test could not produce a valid figure
    │   ├── TransportError        unreachable, refused, reset, stalled, timed out
    │   ├── ProtocolError         the peer is not speaking the protocol (e.g. not a netprobe server)
    │   ├── ServerRefused         the peer answered with a refusal (HTTP 4xx/5xx, quota, auth)
    │   ├── BudgetExceeded        the data budget does not allow the test
    │   └── RawSocketDenied       no privilege for a raw socket (also a PermissionError)
    ├── BudgetReached             a drive transfer used up its data allowance: ends as planned
    ├── StoreError                the results store cannot be opened or written
    └── EvidenceError             a record's hash or signature does not match (compliance.evidence)

Callers catch `NetprobeError` (or one branch) and show the message; the standard-library
bases of UnitError and RawSocketDenied keep older `except ValueError`/`PermissionError` working.

Each error carries a short `reason` (snake_case) used as a metric label and stored with failed
results, so a failure is recorded as a failure with a reason, never as a zero rate.
"""

from __future__ import annotations

# Exit codes every command shares (netprobe.cli adds its own beyond these).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


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


class UnitError(ConfigError, ValueError):
    """A quantity with a unit (rate, size, duration) that does not parse."""


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


class RawSocketDenied(MeasurementError, PermissionError):
    """A raw socket (ICMP echo, SYN probe) needs CAP_NET_RAW, which this process lacks."""

    reason = "no_raw_socket"


class BudgetReached(NetprobeError):
    """A drive's data allowance is used up: the transfer ends here, as planned, not as a failure."""

    reason = "budget_reached"


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


def exit_code(exc: BaseException) -> int | None:
    """The exit code for an error a person should see as one line; None for a real bug."""
    if isinstance(exc, ConfigError | ValueError | OSError):
        return EXIT_BAD_INPUT
    if isinstance(exc, NetprobeError):
        return EXIT_FAILED
    return None


def one_line(exc: BaseException) -> str:
    """The error as one line: an OSError without its "[Errno 2]" prefix, named by its file."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror[0].lower() + exc.strerror[1:]
        return f"{exc.filename}: {reason}" if exc.filename else reason
    return str(exc)
