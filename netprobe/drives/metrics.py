"""Prometheus metrics of the drive probes, read from the last results at scrape time.

The agent hands every stored record to `observe()` and registers the collector once:

    drives = DriveMetrics()
    registry.register(drives)
    drives.observe(result.to_dict())        # any record; only kind == "drive" is used

Gauges show the last probe of each drive and direction; counters (`*_total`) add up bytes and
failures so `increase()` works over any window. Labels are drive names from the configuration,
directions, phases, severities, reasons and throttle kinds: all low-cardinality, no addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netprobe.events import ResultObserver

_DIRECTIONS = ("download", "upload")


class DriveMetrics(ResultObserver):
    """A prometheus_client collector of the drive probe metrics (docs/method.md §6 names)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], dict[str, Any]] = {}
        self._tiers: dict[str, str] = {}
        self._bytes: dict[tuple[str, str], int] = {}
        self._failures: dict[tuple[str, str, str], int] = {}
        self._last_success: dict[tuple[str, str], float] = {}

    def observe(self, record: dict[str, Any]) -> None:
        """Take one stored result; records that are not drive probes are ignored."""
        if record.get("kind") != "drive":
            return
        drive = str(record["drive"])
        self._tiers[drive] = str(record.get("tier") or "unknown")
        when = _timestamp(record.get("started_at"))
        for direction in _DIRECTIONS:
            transfer = record.get(direction)
            if not transfer:
                continue
            key = (drive, direction)
            self._last[key] = transfer
            self._bytes[key] = self._bytes.get(key, 0) + int(transfer.get("bytes") or 0)
            if transfer.get("ok"):
                if when is not None:
                    self._last_success[key] = max(when, self._last_success.get(key, 0.0))
            else:
                failure = (drive, direction, str(transfer.get("reason") or "failed"))
                self._failures[failure] = self._failures.get(failure, 0) + 1

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["drive", "direction"]
        rate = GaugeMetricFamily(
            "netprobe_drive_rate_bytes_per_second",
            "Last drive transfer rate: steady (one connection, after the burst) or burst.",
            labels=[*labels, "phase"],
        )
        ttfb = GaugeMetricFamily(
            "netprobe_drive_ttfb_seconds",
            "Time from the data request to its first byte, last probe.",
            labels=labels,
        )
        link = GaugeMetricFamily(
            "netprobe_drive_link_seconds",
            "Time spent resolving the download link (API calls, redirects), last probe.",
            labels=labels,
        )
        ratio = GaugeMetricFamily(
            "netprobe_drive_line_ratio",
            "Drive steady rate over the line's rate measured just before it (0-1).",
            labels=labels,
        )
        throttle = GaugeMetricFamily(
            "netprobe_drive_throttle_info",
            "Throttle kind seen on the last probe (value always 1).",
            labels=[*labels, "kind"],
        )
        gib = GaugeMetricFamily(
            "netprobe_drive_gibibyte_seconds",
            "Seconds a 1 GiB transfer would take at the last steady rate.",
            labels=labels,
        )
        floors = GaugeMetricFamily(
            "netprobe_drive_floor_bytes_per_second",
            "Configured floors the steady rate is judged against.",
            labels=[*labels, "severity"],
        )
        success = GaugeMetricFamily(
            "netprobe_drive_last_success_timestamp_seconds",
            "When the last successful probe of this drive and direction started.",
            labels=labels,
        )
        burst_seconds = GaugeMetricFamily(
            "netprobe_drive_burst_seconds",
            "How long the burst before the steady rate lasted, last probe (absent: no burst).",
            labels=labels,
        )
        burst_bytes = GaugeMetricFamily(
            "netprobe_drive_burst_bytes",
            "Payload bytes the burst before the steady rate carried, last probe.",
            labels=labels,
        )
        steady_seconds = GaugeMetricFamily(
            "netprobe_drive_steady_seconds",
            "How long the steady rate held in the last probe.",
            labels=labels,
        )
        stop = GaugeMetricFamily(
            "netprobe_drive_stop_info",
            "What ended the last download: steady (held long enough), max_bytes or time_limit.",
            labels=[*labels, "stop"],
        )
        paid = GaugeMetricFamily(
            "netprobe_drive_paid_ratio",
            "Free account's steady rate over the paid account's of the same group (0-1).",
            labels=labels,
        )
        for (drive, direction), transfer in sorted(self._last.items()):
            values = [drive, direction]
            if transfer.get("ok"):
                _add(rate, [*values, "steady"], transfer.get("bytes_per_second"))
                _add(rate, [*values, "burst"], transfer.get("burst_bytes_per_second"))
                _add(ttfb, values, transfer.get("ttfb_seconds"))
                _add(link, values, transfer.get("link_seconds"))
                _add(ratio, values, transfer.get("line_ratio"))
                _add(gib, values, transfer.get("gibibyte_seconds"))
                _add(paid, values, transfer.get("paid_ratio"))
                _add(burst_seconds, values, transfer.get("burst_seconds"))
                _add(burst_bytes, values, transfer.get("burst_bytes"))
                _add(steady_seconds, values, transfer.get("steady_seconds"))
                if transfer.get("stop_reason"):
                    stop.add_metric([*values, str(transfer["stop_reason"])], 1)
            throttle.add_metric([*values, str(transfer.get("throttle") or "unknown")], 1)
            for severity, floor in sorted((transfer.get("floor_bytes_per_second") or {}).items()):
                floors.add_metric([*values, severity], float(floor))
        for key, when in sorted(self._last_success.items()):
            success.add_metric(list(key), when)
        tier = GaugeMetricFamily(
            "netprobe_drive_tier_info",
            "Account tier of each drive (value always 1).",
            labels=["drive", "tier"],
        )
        for drive, name in sorted(self._tiers.items()):
            tier.add_metric([drive, name], 1)
        moved = CounterMetricFamily(
            "netprobe_drive_bytes", "Payload bytes moved by drive probes.", labels=labels
        )
        for key, count in sorted(self._bytes.items()):
            moved.add_metric(list(key), count)
        failures = CounterMetricFamily(
            "netprobe_drive_failures",
            "Failed drive probes by reason.",
            labels=[*labels, "reason"],
        )
        for failure, count in sorted(self._failures.items()):
            failures.add_metric(list(failure), count)
        yield from (
            rate,
            ttfb,
            link,
            ratio,
            throttle,
            gib,
            floors,
            success,
            paid,
            burst_seconds,
            burst_bytes,
            steady_seconds,
            stop,
            tier,
            moved,
            failures,
        )


def _add(family: GaugeMetricFamily, labels: list[str], value: Any) -> None:
    if value is not None:
        family.add_metric(labels, float(value))


def _timestamp(started_at: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(started_at)).timestamp()
    except ValueError:
        return None
