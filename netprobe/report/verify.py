"""Check the evidence in an export (JSON lines), a JSON report or an HTML report.

    count = verify_file(Path("results.jsonl"))   # EvidenceError naming the first bad record

A line of an export that is no longer JSON is itself a failed record: it is named by its
position and, when it can still be read, its id.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from netprobe.compliance.evidence import EvidenceError, verify_chain
from netprobe.errors import ConfigError

EVIDENCE_SCRIPT_ID = "netprobe-records"
_SCRIPT_RE = re.compile(
    rf'<script type="application/json" id="{EVIDENCE_SCRIPT_ID}">(.*?)</script>', re.DOTALL
)
# A header row of plain column names: what a CSV export (netprobe's or another tool's) opens with.
_CSV_HEADER_RE = re.compile(r'^"?[A-Za-z_][\w .()/-]*"?(,"?[A-Za-z_][\w .()/-]*"?)+\r?$')
_ID_RE = re.compile(r'"id"\s*:\s*"([^"]*)"')


def read_records(text: str) -> list[dict[str, Any]]:
    """The sealed records carried by an export or a report."""
    stripped = text.lstrip()
    if stripped.startswith("<") and "<html" in stripped[:1000].lower():
        match = _SCRIPT_RE.search(text)
        if match is None:
            raise EvidenceError("this HTML file carries no netprobe records")
        return _report_records(match[1])
    if stripped.startswith("{") and '"netprobe_report"' in stripped[:200]:
        return _report_records(text)
    if _CSV_HEADER_RE.match(stripped.split("\n", 1)[0]):
        raise ConfigError(
            "this file is CSV, not netprobe's JSON lines: bring it in with "
            "`netprobe results import FILE`, then report from the store"
        )
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            ident = _ID_RE.search(line)
            name = f" (id {ident[1]})" if ident else ""
            raise EvidenceError(
                f"record {len(records) + 1}{name} on line {number} was altered: it is no "
                "longer valid JSON"
            ) from None
        if not isinstance(record, dict):
            raise EvidenceError(f"record {len(records) + 1} on line {number} is not a record")
        records.append(record)
    return records


def _report_records(text: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvidenceError(
            f"the report's records were altered: not valid JSON at character {exc.pos}"
        ) from None
    records = document.get("records") if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvidenceError("the report's records are not a list of records")
    return records


def verify_file(path: Path, public_key: str | None = None) -> int:
    """Verify every record in the file; the number checked, or EvidenceError."""
    # A byte that is not UTF-8 becomes U+FFFD: the record holding it then fails its hash.
    records = read_records(path.read_bytes().decode("utf-8", errors="replace"))
    if not records:
        raise EvidenceError(f"{path} holds no records")
    return verify_chain(records, public_key=public_key)


def records_for_report(text: str) -> list[dict[str, Any]]:
    """The records of an export or report, each with the `started_at` a report needs."""
    records = read_records(text)
    for number, record in enumerate(records, start=1):
        started = record.get("started_at")
        if not isinstance(started, str) or not started:
            raise ConfigError(f"record {number} (id {record.get('id', '?')}) has no started_at")
        try:
            has_offset = datetime.fromisoformat(started).tzinfo is not None
        except ValueError:
            has_offset = False
        if not has_offset:
            raise ConfigError(
                f"record {number} (id {record.get('id', '?')}): started_at {started!r} is not "
                "an ISO 8601 time with an offset"
            ) from None
    return records
