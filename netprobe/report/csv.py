"""The one CSV layout: one row per test and direction, for `results export` and the report alike.

Both write the same columns under the same names, so a sheet made from an export lines up
with one made from a report; a figure a source does not have (the contract share in an export,
say) is an empty cell:

    write_csv(records, sys.stdout, zone)          # netprobe results export --format csv
    render(report)                                # netprobe report --format csv
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import Any, TextIO

from netprobe.compliance.evidence import key_fingerprint
from netprobe.compliance.series import parse_utc
from netprobe.report.document import Report
from netprobe.results import DIRECTIONS, Direction

COLUMNS = (
    "seq",
    "id",
    "run_id",
    "kind",
    "started_at_utc",
    "started_at_local",
    "probe_id",
    "server_name",
    "server_url",
    "direction",
    "outcome",
    "valid",
    "invalid_reason",
    "peak",
    "ok",
    "failure_reason",
    "bytes_per_second",
    "share_of_contract",
    "window_seconds",
    "bytes",
    "total_bytes",
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
    "cross_traffic_during_bytes_per_second",
    "cpu_percent",
    "held_seconds",
    "server_receipt",
    "probe_key_fingerprint",
    "hash",
    "imported_from",
)


def record_rows(
    record: dict[str, Any],
    zone: tzinfo,
    theoretical: Callable[[Direction], float] | None = None,
) -> list[dict[str, Any]]:
    """The rows of one stored record (line or drive): one per direction it ran, at least one."""
    started = parse_utc(record["started_at"])
    conditions = record.get("conditions") or {}
    server = record.get("server") or {}
    if not isinstance(server, dict):
        server = {"url": server}
    evidence = record.get("evidence") or {}
    source = record.get("source")
    base = {
        "seq": evidence.get("seq"),
        "id": record.get("id", ""),
        "run_id": record.get("run_id", ""),
        "kind": record.get("kind", ""),
        "started_at_utc": started.isoformat(),
        "started_at_local": started.astimezone(zone).isoformat(),
        "probe_id": record.get("probe_id", ""),
        "server_name": server.get("name", "") or record.get("drive", ""),
        "server_url": server.get("url", ""),
        "outcome": record.get("outcome", ""),
        "valid": bool(record.get("valid", True)),
        "invalid_reason": record.get("invalid_reason") or "",
        "peak": record.get("peak"),
        "idle_latency_seconds": record.get("idle_latency_seconds"),
        "link_type": conditions.get("link_type") or "",
        "link_speed_bytes_per_second": conditions.get("link_speed_bytes_per_second"),
        "cross_traffic_bytes_per_second": conditions.get("cross_traffic_bytes_per_second"),
        "cross_traffic_during_bytes_per_second": conditions.get(
            "cross_traffic_during_bytes_per_second"
        ),
        "cpu_percent": conditions.get("cpu_percent"),
        "held_seconds": conditions.get("held_seconds"),
        "probe_key_fingerprint": key_fingerprint(str(evidence["public_key"]))
        if "public_key" in evidence
        else "",
        "hash": evidence.get("hash", ""),
        # A test measured by another tool says which (results import); empty for our own.
        "imported_from": source.get("tool", "") if isinstance(source, dict) else "",
    }
    rows = []
    for direction in DIRECTIONS:
        result = record.get(direction)
        if not isinstance(result, dict):
            continue
        method = result.get("method") or {}
        rate = result.get("bytes_per_second") if result.get("ok") else None
        share = rate / theoretical(direction) if rate is not None and theoretical else None
        rows.append(
            {
                **base,
                "direction": direction,
                "ok": bool(result.get("ok")),
                "failure_reason": "" if result.get("ok") else result.get("reason") or "",
                "bytes_per_second": rate,
                "share_of_contract": share,
                "window_seconds": result.get("window_seconds"),
                "bytes": result.get("bytes"),
                "total_bytes": result.get("total_bytes"),
                "streams": result.get("streams"),
                "protocol": method.get("protocol", ""),
                "warmup_rule": method.get("warmup_rule", ""),
                "window_rule": method.get("window_rule", ""),
                "aggregate": method.get("aggregate", ""),
                "loaded_latency_seconds": result.get("loaded_latency_seconds"),
            }
        )
    return rows or [base]


def write_csv(records: Iterable[dict[str, Any]], out: TextIO, zone: tzinfo) -> None:
    """Rows of every record with a header; empty cells where a figure is absent."""
    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        for row in record_rows(record, zone):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def render(report: Report) -> str:
    """The line tests of the report, with each rate's share of the contracted rate."""
    out = io.StringIO()

    def theoretical(direction: Direction) -> float:
        return report.contract.direction(direction).theoretical

    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in report.line_records():
        for row in record_rows(record, report.zone, theoretical):
            if row.get("direction"):
                row["server_receipt"] = report.receipt(record, row["direction"]).describe()
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
