"""What the server tells its operator: an access log line per test, and Prometheus metrics.

The access log (off by default) is one line per transfer or refusal (a client's refusals
at most once per interval), key=value after a UTC timestamp, for fail2ban or a log shipper:

    2026-12-04T14:30:00.123Z client=192.0.2.7 protocol=native direction=download
        bytes=125000000 seconds=10.012 outcome=ok              (one line in the file)

A fail2ban filter for clients that keep hitting their share:
    failregex = ^\\S+ client=<HOST> .* outcome=refused:

prometheus_client is imported only when metrics are asked for.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from netprobe.serve.state import ServerState, Transfer

if TYPE_CHECKING:
    from prometheus_client.core import Metric


class AccessLog:
    """Writes one line per ended or refused transfer to a stream (an observer of the state).

    Refusals of one client for one reason are written at most once per interval, the next
    line saying how many were held back (`repeats=N`): a flood must not fill the disk, and
    fail2ban still sees the client once per interval for as long as it keeps at it.
    """

    def __init__(self, stream: TextIO, refusal_interval_seconds: float = 10.0) -> None:
        self.stream = stream
        self.refusal_interval_seconds = refusal_interval_seconds
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}

    @classmethod
    def open(cls, path: str) -> AccessLog:
        """The log at `path`, appended to line by line; "-" is standard error."""
        if path == "-":
            return cls(sys.stderr)
        return cls(open(path, "a", buffering=1, encoding="utf-8"))

    def __call__(self, transfer: Transfer) -> None:
        repeats = ""
        if transfer.outcome.startswith("refused:"):
            key = (transfer.client, transfer.outcome)
            now = time.monotonic()
            since, held_back = self._refusals.get(key, (-self.refusal_interval_seconds, 0))
            if now - since < self.refusal_interval_seconds:
                self._refusals[key] = (since, held_back + 1)
                return
            self._refusals = {  # forget quiet clients, but not a count still to be said
                k: v
                for k, v in self._refusals.items()
                if v[1] or now - v[0] < self.refusal_interval_seconds
            }
            self._refusals[key] = (now, 0)
            repeats = f" repeats={held_back}" if held_back else ""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.stream.write(
            f"{stamp} client={transfer.client or '-'} protocol={transfer.protocol} "
            f"direction={transfer.direction} bytes={transfer.n_bytes} "
            f"seconds={transfer.seconds:.3f} outcome={transfer.outcome}{repeats}\n"
        )


class ServeCollector:
    """Reads the server's counters at scrape time (the server never waits on a scrape)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self.state
        tests = CounterMetricFamily(
            "netprobe_serve_tests",
            "Transfers (test streams) that ended, by protocol, direction and outcome",
            labels=["protocol", "direction", "outcome"],
        )
        for (protocol, direction, outcome), count in dict(state.transfers_ended).items():
            tests.add_metric([protocol, direction, outcome], count)
        moved = CounterMetricFamily(
            "netprobe_serve_bytes",
            "Payload bytes sent (download) or received (upload)",
            labels=["protocol", "direction"],
        )
        for (protocol, direction), n_bytes in dict(state.bytes_moved).items():
            moved.add_metric([protocol, direction], n_bytes)
        refusals = CounterMetricFamily(
            "netprobe_serve_refusals",
            "Connections and requests refused or cut, by the share or timeout that did it",
            labels=["reason"],
        )
        for reason, count in dict(state.refusals).items():
            refusals.add_metric([reason], count)
        yield from (tests, moved, refusals)
        for name, help_text, value in (
            ("open_connections", "Client connections open now", state.connections.in_use),
            ("transfers_in_progress", "Transfers in progress now", state.transfers.in_use),
            ("tests_in_progress", "Native tests in progress now", state.test_shares.in_use),
            (
                "max_connections",
                "The connection cap after the descriptor limit",
                state.limits.max_connections,
            ),
        ):
            yield GaugeMetricFamily(f"netprobe_serve_{name}", help_text, value=value)


def start_metrics(state: ServerState, host: str, port: int) -> None:
    """Serve the server's metrics at http://host:port/metrics from a thread of its own."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(ServeCollector(state))
    start_http_server(port, addr=host, registry=registry)
