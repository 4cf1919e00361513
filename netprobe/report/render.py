"""Records in, a report out: the one call behind `netprobe report`.

text = render_report(records, contract, config, fmt="html", since="2026-11-01")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.report import csv, html, json
from netprobe.report.document import Report, build_report, period_bounds

FORMATS: dict[str, Callable[[Report], str]] = {
    "html": html.render,
    "json": json.render,
    "csv": csv.render,
}


def render_report(
    records: Sequence[dict[str, Any]],
    contract: Contract,
    config: ComplianceConfig,
    fmt: str = "html",
    policies: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
    head: dict[str, Any] | None = None,
    server_keys: dict[str, str] | None = None,
) -> str:
    """The report on the records started in `[since, until]` (dates are whole local days);
    every record given is embedded with the export's signed `head`."""
    period = period_bounds(since, until, config.zone())
    report = build_report(records, contract, config, policies, period, now, head, server_keys)
    return FORMATS[fmt](report)
