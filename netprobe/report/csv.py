"""The CSV report: one row per line test and direction, with its conditions and method."""

from __future__ import annotations

import csv
import io

from netprobe.report.document import Report, direction_rows

COLUMNS = (
    "seq",
    "id",
    "started_at_utc",
    "started_at_local",
    "direction",
    "valid",
    "invalid_reason",
    "ok",
    "failure_reason",
    "bytes_per_second",
    "share_of_contract",
    "window_seconds",
    "bytes",
    "streams",
    "protocol",
    "warmup_rule",
    "window_rule",
    "aggregate",
    "idle_latency_seconds",
    "loaded_latency_seconds",
    "link_type",
    "link_speed_bytes_per_second",
    "cross_traffic_bytes_per_second",
    "cpu_percent",
    "held_seconds",
    "server_name",
    "server_url",
    "probe_id",
    "probe_key_fingerprint",
    "server_receipt",
    "hash",
)


def render(report: Report) -> str:
    """The tests of the report as CSV with a header row; empty cells where a figure is absent."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in direction_rows(report):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
