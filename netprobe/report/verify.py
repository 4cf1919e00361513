"""Check the evidence in an export (JSON lines), a JSON report or an HTML report.

    carried = read_evidence(Path("results.jsonl").read_text())   # records and signed head
    summary = verify_file(Path("results.jsonl"), trusted_keys={"MCow..."})

An export's first line is its signed head; the records follow in chain order. A line of an
export that is no longer JSON is itself a failed record: it is named by its position and, when
it can still be read, its id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from netprobe.compliance.evidence import (
    HEAD_TAG,
    ChainSummary,
    EvidenceError,
    verify_export,
)
from netprobe.errors import ConfigError

EVIDENCE_SCRIPT_ID = "netprobe-records"
_SCRIPT_RE = re.compile(
    rf'<script type="application/json" id="{EVIDENCE_SCRIPT_ID}">(.*?)</script>', re.DOTALL
)
# A header row of plain column names: what a CSV export (netprobe's or another tool's) opens with.
_CSV_HEADER_RE = re.compile(r'^"?[A-Za-z_][\w .()/-]*"?(,"?[A-Za-z_][\w .()/-]*"?)+\r?$')
_ID_RE = re.compile(r'"id"\s*:\s*"([^"]*)"')


@dataclass
class CarriedEvidence:
    """The sealed records a file carries, and the signed head of their export."""

    records: list[dict[str, Any]]
    head: dict[str, Any] | None


def export_lines(records: list[dict[str, Any]], head: dict[str, Any]) -> str:
    """An export as JSON lines: the signed head first, then one record per line."""
    lines = [json.dumps(item, separators=(",", ":")) for item in (head, *records)]
    return "".join(line + "\n" for line in lines)


def read_evidence(text: str) -> CarriedEvidence:
    """The sealed records and head carried by an export or a report."""
    stripped = text.lstrip()
    if stripped.startswith("<") and "<html" in stripped[:1000].lower():
        match = _SCRIPT_RE.search(text)
        if match is None:
            raise EvidenceError("this HTML file carries no netprobe records")
        return _report_evidence(match[1])
    if stripped.startswith("{") and '"netprobe_report"' in stripped[:200]:
        return _report_evidence(text)
    if _CSV_HEADER_RE.match(stripped.split("\n", 1)[0]):
        raise ConfigError(
            "this file is CSV, not netprobe's JSON lines: bring it in with "
            "`netprobe results import FILE`, then report from the store"
        )
    records: list[dict[str, Any]] = []
    head: dict[str, Any] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if HEAD_TAG in line and not records:
                raise EvidenceError(
                    f"the export's head on line {number} was altered: it is no longer valid JSON"
                ) from None
            ident = _ID_RE.search(line)
            name = f" (id {ident[1]})" if ident else ""
            raise EvidenceError(
                f"record {len(records) + 1}{name} on line {number} was altered: it is no "
                "longer valid JSON"
            ) from None
        if not isinstance(record, dict):
            raise EvidenceError(f"record {len(records) + 1} on line {number} is not a record")
        if HEAD_TAG in record:
            if head is not None or records:
                raise EvidenceError(f"line {number} is a second or misplaced export head")
            head = record
            continue
        records.append(record)
    return CarriedEvidence(records, head)


def read_records(text: str) -> list[dict[str, Any]]:
    """The sealed records carried by an export or a report."""
    return read_evidence(text).records


def _report_evidence(text: str) -> CarriedEvidence:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvidenceError(
            f"the report's records were altered: not valid JSON at character {exc.pos}"
        ) from None
    records = document.get("records") if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvidenceError("the report's records are not a list of records")
    head = document.get("export_head") if isinstance(document, dict) else None
    return CarriedEvidence(records, head if isinstance(head, dict) else None)


def load_trust_file(path: Path) -> set[str]:
    """Public keys (base64), one a line; `#` starts a comment."""
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        key = line.split("#", 1)[0].strip()
        if key:
            keys.add(key)
    return keys


def verify_file(path: Path, trusted_keys: set[str] | None = None) -> ChainSummary:
    """Verify every record and the head in the file; EvidenceError or SignerNotPinned."""
    # A byte that is not UTF-8 becomes U+FFFD: the record holding it then fails its hash.
    carried = read_evidence(path.read_bytes().decode("utf-8", errors="replace"))
    if not carried.records:
        raise EvidenceError(f"{path} holds no records")
    return verify_export(carried.records, carried.head, trusted_keys)


def records_for_report(text: str) -> CarriedEvidence:
    """The records of an export or report, each with the `started_at` a report needs."""
    carried = read_evidence(text)
    for number, record in enumerate(carried.records, start=1):
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
    return carried
