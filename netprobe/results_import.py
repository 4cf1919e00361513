"""Measurements made elsewhere, brought into the store as imported line tests.

    records = read_import(Path("speedtest.csv").read_text(), "speedtest-cli-csv", zone=None)
    added = import_records(store, records)          # records already stored are skipped

Formats (docs/import.md has the columns and units of each):

    speedtest-cli-json      `speedtest-cli --json`, one object a line (rates in bit/s, UTC)
    speedtest-cli-csv       `speedtest-cli --csv` (with or without `--csv-header`)
    ookla-json              the Ookla CLI's `speedtest -f json` / `-f jsonl` (rates in byte/s)
    speedtest-tracker-csv   speedtest-tracker's result export (rates in bit/s, local time)
    netprobe-jsonl          netprobe's record (the `results export` lines, or fewer fields)
    netprobe-csv            netprobe's CSV (the `results export --format csv` rows)

Every record keeps where it came from in `source` (tool, format, file, line) and its method
names the tool, so nothing imported passes for this probe's own measurement. A time without
a UTC offset is read in the zone given, and refused when none is. Bad lines are all named,
with their line number and field, and then nothing is imported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

from netprobe.compliance.evidence import HEAD_TAG
from netprobe.errors import ConfigError
from netprobe.results import DIRECTIONS, DirectionResult, LineResult, Method, Server

FORMATS = (
    "speedtest-cli-json",
    "speedtest-cli-csv",
    "ookla-json",
    "speedtest-tracker-csv",
    "netprobe-jsonl",
    "netprobe-csv",
)
MAX_NAMED_PROBLEMS = 20
SPEEDTEST_CLI_COLUMNS = (
    "Server ID",
    "Sponsor",
    "Server Name",
    "Timestamp",
    "Distance",
    "Ping",
    "Download",
    "Upload",
    "Share",
    "IP Address",
)


class BadLine(Exception):
    """One line that cannot be imported: which field, and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


def detect_format(text: str) -> str:
    """The format of `text`, judged by its first line."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if first.startswith("{"):
        try:
            sample = json.loads(first)
        except json.JSONDecodeError:
            return "netprobe-jsonl"
        if isinstance(sample, dict) and "type" in sample and "timestamp" in sample:
            return "ookla-json"
        if isinstance(sample, dict) and "bytes_received" in sample and "timestamp" in sample:
            return "speedtest-cli-json"
        return "netprobe-jsonl"
    columns = {c.strip().strip('"').lower() for c in first.split(",")}
    if "server id" in columns and "sponsor" in columns:
        return "speedtest-cli-csv"
    if "created at" in columns or "created_at" in columns:
        return "speedtest-tracker-csv"
    if "started_at_utc" in columns and "direction" in columns:
        return "netprobe-csv"
    if first.count(",") == len(SPEEDTEST_CLI_COLUMNS) - 1 and first.split(",")[0].isdigit():
        return "speedtest-cli-csv"
    raise ConfigError(
        "cannot tell the format of this file; give --format, one of: " + ", ".join(FORMATS)
    )


def read_import(
    text: str, fmt: str | None, zone: tzinfo | None, file_name: str = "-"
) -> list[dict[str, Any]]:
    """The line-test records in `text`; ConfigError naming every bad line and field."""
    fmt = fmt or detect_format(text)
    if fmt not in READERS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, row in READERS[fmt](text.lstrip("\ufeff")):
        try:
            record = CONVERTERS[fmt](row, zone)
        except BadLine as exc:
            problems.append(f"line {number}: {exc}")
            continue
        # A netprobe record imported before keeps its first source and its id.
        record.setdefault(
            "source", {"tool": TOOLS[fmt], "format": fmt, "file": file_name, "line": number}
        )
        record["id"] = record.get("id") or _stable_id(fmt, row)
        records.append(record)
    if problems:
        shown = problems[:MAX_NAMED_PROBLEMS]
        more = len(problems) - len(shown)
        tail = [f"… and {more} more"] if more else []
        raise ConfigError(
            f"{file_name}: {len(problems)} bad line(s), nothing imported:\n  "
            + "\n  ".join(shown + tail)
        )
    if not records:
        raise ConfigError(f"{file_name}: no measurements in the file")
    return records


def import_records(store: Any, records: list[dict[str, Any]]) -> tuple[int, int]:
    """Seal and store the records not stored yet; (added, already there)."""
    stored = {str(r.get("id")) for r in store.records(kind="line")}
    fresh = [r for r in records if r["id"] not in stored]
    for record in sorted(fresh, key=lambda r: r["started_at"]):
        store.add(record)
    return len(fresh), len(records) - len(fresh)


def _stable_id(fmt: str, row: Any) -> str:
    # The same line imported twice gets the same id, so importing a file again adds nothing.
    digest = hashlib.sha256(f"{fmt}\n{json.dumps(row, sort_keys=True)}".encode()).hexdigest()
    return "imp" + digest[:29]


def _json_lines(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Unreadable(f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not (isinstance(value, dict) and HEAD_TAG in value):  # an export's signed head
            yield number, value


def _csv_rows(text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        yield (
            reader.line_num,
            {(k or "").strip().lower().replace(" ", "_"): v for k, v in row.items()},
        )


def _speedtest_cli_csv_rows(text: str) -> Iterator[tuple[int, Any]]:
    has_header = text.lstrip().startswith("Server ID")
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        if (has_header and reader.line_num == 1) or not row:
            continue
        names = [c.lower().replace(" ", "_") for c in SPEEDTEST_CLI_COLUMNS]
        if len(row) != len(names):
            yield (
                reader.line_num,
                _Unreadable(
                    f"{len(row)} columns, expected {len(names)} ({', '.join(SPEEDTEST_CLI_COLUMNS)})"
                ),
            )
            continue
        yield reader.line_num, dict(zip(names, row, strict=True))


class _Unreadable:
    def __init__(self, problem: str) -> None:
        self.problem = problem


def _mapping(row: Any) -> dict[str, Any]:
    if isinstance(row, _Unreadable):
        raise BadLine("line", row.problem)
    if not isinstance(row, dict):
        raise BadLine("line", "not an object")
    return row


def _number(row: dict[str, Any], field: str, *, required: bool = True) -> float | None:
    value = row.get(field)
    if value in (None, ""):
        if required:
            raise BadLine(field, "missing")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadLine(field, f"{value!r} is not a number") from None
    if number < 0:
        raise BadLine(field, f"{value!r} is negative")
    return number


def _time(row: dict[str, Any], field: str, zone: tzinfo | None) -> str:
    value = row.get(field)
    if not value:
        raise BadLine(field, "missing: every test needs the time it started")
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadLine(field, f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        if zone is None:
            raise BadLine(
                field,
                f"{value!r} has no UTC offset; give --timezone, the zone the tool wrote it in "
                "(e.g. Europe/Berlin)",
            )
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _line(
    started_at: str,
    server: Server,
    rates_bytes_per_second: dict[str, float | None],
    tool: str,
    idle_latency_seconds: float | None = None,
    byte_counts: dict[str, int] | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    method = Method(protocol=server.protocol, engine=tool, aggregate=tool, measured_at="imported")
    result = LineResult(server=server, idle_latency_seconds=idle_latency_seconds)
    result.started_at = started_at
    for direction in DIRECTIONS:
        rate = rates_bytes_per_second.get(direction)
        if rate is None:
            continue
        if rate > 0:
            part = DirectionResult(direction, True, rate, method=method)
            part.bytes = part.total_bytes = (byte_counts or {}).get(direction, 0)
        else:
            why = failure or f"{tool} recorded no {direction} rate"
            part = DirectionResult.failed(direction, "failed_elsewhere", why, method)
        setattr(result, direction, part)
    if any(not d.ok for d in result.directions()):
        result.outcome, result.valid, result.invalid_reason = "failed", False, "failed"
    return result.to_dict()


def _from_speedtest_cli(row: Any, zone: tzinfo | None) -> dict[str, Any]:
    row = _mapping(row)
    server = row.get("server") if isinstance(row.get("server"), dict) else {}
    name = server.get("sponsor") or row.get("sponsor") or ""
    place = server.get("name") or row.get("server_name") or ""
    bits = {d: _number(row, d) for d in DIRECTIONS}
    ping = _number(row, "ping", required=False)
    return _line(
        _time(row, "timestamp", zone),
        Server(
            url=str(server.get("host") or ""),
            name=f"{name} ({place})" if place else str(name),
            protocol="ookla",
        ),
        # speedtest-cli writes 0 for a direction skipped with --no-download / --no-upload.
        {d: b / 8 if b else None for d, b in bits.items()},
        "speedtest-cli",
        ping / 1000 if ping is not None else None,
        {
            "download": int(row.get("bytes_received") or 0),
            "upload": int(row.get("bytes_sent") or 0),
        },
    )


def _from_ookla(row: Any, zone: tzinfo | None) -> dict[str, Any]:
    row = _mapping(row)
    started_at = _time(row, "timestamp", zone)
    server_part = row.get("server") if isinstance(row.get("server"), dict) else {}
    server = Server(
        url=f"{server_part.get('host', '')}:{server_part.get('port', '')}".strip(":"),
        name=str(server_part.get("name") or ""),
        protocol="ookla",
    )
    if row.get("type") != "result":
        # The CLI writes a failed test as a log line with level "error".
        if row.get("type") == "log" and row.get("level") == "error":
            return _line(
                started_at,
                server,
                {"download": 0.0, "upload": 0.0},
                "Ookla CLI (speedtest)",
                failure=str(row.get("message") or "the test failed"),
            )
        raise BadLine("type", f"{row.get('type')!r} is not a test result")
    rates: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for direction in DIRECTIONS:
        part = row.get(direction)
        if not isinstance(part, dict):
            raise BadLine(direction, "missing")
        rates[direction] = _number(part, "bandwidth")
        counts[direction] = int(part.get("bytes") or 0)
    ping = row.get("ping") if isinstance(row.get("ping"), dict) else {}
    latency_ms = _number(ping, "latency", required=False)
    return _line(
        started_at,
        server,
        rates,
        "Ookla CLI (speedtest)",
        latency_ms / 1000 if latency_ms is not None else None,
        counts,
    )


def _from_tracker(row: Any, zone: tzinfo | None) -> dict[str, Any]:
    row = _mapping(row)
    bits = {d: _number(row, d, required=False) for d in DIRECTIONS}
    ping = _number(row, "ping", required=False)
    name = row.get("server_name") or row.get("service") or "speedtest-tracker"
    return _line(
        _time(row, "created_at", zone),
        Server(url=str(row.get("server_id") or ""), name=str(name), protocol="ookla"),
        {d: (b / 8 if b is not None else 0.0) for d, b in bits.items()},
        "speedtest-tracker",
        ping / 1000 if ping is not None else None,
    )


def _from_netprobe_jsonl(row: Any, zone: tzinfo | None) -> dict[str, Any]:
    record = {k: v for k, v in _mapping(row).items() if k != "evidence"}
    record["started_at"] = _time(record, "started_at", zone)
    record.setdefault("kind", "line")
    for direction in DIRECTIONS:
        part = record.get(direction)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise BadLine(direction, "not an object")
        part.setdefault("ok", part.get("bytes_per_second") is not None)
        if part["ok"]:
            _number(part, "bytes_per_second")
    if not any(isinstance(record.get(d), dict) for d in DIRECTIONS):
        raise BadLine("download", "no download or upload in the record")
    return record


def _netprobe_csv_rows(text: str) -> Iterator[tuple[int, Any]]:
    """Rows of one test (the export writes one row per direction) joined by their id."""
    by_id: dict[str, tuple[int, dict[str, Any]]] = {}
    for number, row in _csv_rows(text):
        key = row.get("id") or f"line-{number}"
        by_id.setdefault(key, (number, {"rows": []}))[1]["rows"].append((number, row))
    yield from by_id.values()


def _from_netprobe_csv(joined: Any, zone: tzinfo | None) -> dict[str, Any]:
    rows: list[tuple[int, dict[str, str]]] = joined["rows"]
    _number_of_first, first = rows[0]
    record: dict[str, Any] = {
        "id": first.get("id") or None,
        "kind": first.get("kind") or "line",
        "started_at": _time(first, "started_at_utc", zone),
        "server": {
            "url": first.get("server_url") or "",
            "name": first.get("server_name") or "",
            "protocol": first.get("protocol") or "",
            "version": "",
        },
        "valid": (first.get("valid") or "True") != "False",
        "invalid_reason": first.get("invalid_reason") or None,
        "outcome": first.get("outcome") or "ok",
        "probe_id": first.get("probe_id") or "",
        "idle_latency_seconds": _number(first, "idle_latency_seconds", required=False),
    }
    if first.get("imported_from"):
        record["source"] = {"tool": first["imported_from"], "format": "netprobe-csv"}
    for number, row in rows:
        direction = row.get("direction")
        if direction not in DIRECTIONS:
            raise BadLine("direction", f"line {number}: {direction!r} is not download or upload")
        ok = (row.get("ok") or "True") != "False"
        rate = _number(row, "bytes_per_second", required=ok)
        record[direction] = {
            "direction": direction,
            "ok": ok,
            "bytes_per_second": rate,
            "window_seconds": _number(row, "window_seconds", required=False) or 0.0,
            "total_bytes": int(_number(row, "total_bytes", required=False) or 0),
            "streams": int(_number(row, "streams", required=False) or 0),
            "reason": row.get("failure_reason") or None,
            "method": {"protocol": row.get("protocol") or "", "measured_at": "imported"},
        }
    return record


READERS: dict[str, Callable[[str], Iterator[tuple[int, Any]]]] = {
    "speedtest-cli-json": _json_lines,
    "speedtest-cli-csv": _speedtest_cli_csv_rows,
    "ookla-json": _json_lines,
    "speedtest-tracker-csv": _csv_rows,
    "netprobe-jsonl": _json_lines,
    "netprobe-csv": _netprobe_csv_rows,
}
CONVERTERS: dict[str, Callable[[Any, tzinfo | None], dict[str, Any]]] = {
    "speedtest-cli-json": _from_speedtest_cli,
    "speedtest-cli-csv": _from_speedtest_cli,
    "ookla-json": _from_ookla,
    "speedtest-tracker-csv": _from_tracker,
    "netprobe-jsonl": _from_netprobe_jsonl,
    "netprobe-csv": _from_netprobe_csv,
}
TOOLS = {
    "speedtest-cli-json": "speedtest-cli",
    "speedtest-cli-csv": "speedtest-cli",
    "ookla-json": "Ookla CLI (speedtest)",
    "speedtest-tracker-csv": "speedtest-tracker",
    "netprobe-jsonl": "netprobe",
    "netprobe-csv": "netprobe",
}
