"""Options in, a report out: the one call behind `netprobe report`.

text = make_report(ReportRequest(config_path=Path("agent.yml"), since="2026-11-01"))
text = render_report(records, contract, config, fmt="html", since="2026-11-01")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netprobe.compliance.config import POLICY_NAMES, ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.errors import ConfigError
from netprobe.report import csv, html, json
from netprobe.report.document import Report, Subscriber, build_report, period_bounds
from netprobe.units import parse_rate_pair

if TYPE_CHECKING:
    from netprobe.config import ServerConfig

FORMATS: dict[str, Callable[[Report], str]] = {
    "html": html.render,
    "json": json.render,
    "csv": csv.render,
}


@dataclass
class ReportRequest:
    """What `netprobe report` was asked for: where the records and the contract come from."""

    config_path: Path | None = None
    input_path: Path | None = None
    policies: list[str] | None = None
    since: str | None = None
    until: str | None = None
    output_format: str = "html"
    plan: str | None = None
    normal: str | None = None
    minimum: str | None = None
    timezone: str | None = None


def make_report(request: ReportRequest, now: datetime | None = None) -> str:
    """The report asked for, or ConfigError naming what is missing or wrong."""
    from netprobe.config import load_config

    if request.output_format not in FORMATS:
        raise ConfigError(f"--format must be html, json or csv, not {request.output_format!r}")
    for name in request.policies or []:
        if name not in POLICY_NAMES:
            raise ConfigError(f"--policy {name!r} is unknown (known: {', '.join(POLICY_NAMES)})")
    agent = load_config(request.config_path, measuring=False) if request.config_path else None
    compliance = agent.compliance if agent else ComplianceConfig()
    if request.timezone is not None:
        try:
            compliance = dataclasses.replace(compliance, timezone=request.timezone)
        except ValueError as exc:
            raise ConfigError(f"--timezone: {exc}") from None
    compliance = compliance.located(agent.probe.timezone if agent else None)
    if request.plan is not None:
        rates = {
            kind: parse_rate_pair(text, f"--{kind}") if text else {}
            for kind, text in (
                ("plan", request.plan),
                ("normal", request.normal),
                ("minimum", request.minimum),
            )
        }
        contract = Contract.from_rates(
            download=rates["plan"]["download"],
            upload=rates["plan"]["upload"],
            download_normal=rates["normal"].get("download"),
            upload_normal=rates["normal"].get("upload"),
            download_minimum=rates["minimum"].get("download"),
            upload_minimum=rates["minimum"].get("upload"),
        )
    elif agent is not None:
        contract = Contract.from_config(agent.contract)
    else:
        raise ConfigError("give --config FILE or --plan DOWN/UP: the report needs the contract")
    subscriber = (
        Subscriber(
            agent.contract.operator,
            agent.contract.plan,
            agent.contract.account,
            agent.contract.service_address,
        )
        if agent
        else Subscriber()
    )
    if request.input_path is not None:
        from netprobe.report.verify import records_for_report

        carried = records_for_report(request.input_path.read_text(encoding="utf-8"))
        records, head = carried.records, carried.head
    else:
        from netprobe.config import open_named_store

        start, end = period_bounds(request.since, request.until, compliance.zone())
        store, _zone = open_named_store(request.config_path, None)
        try:
            records = store.records(
                since=start.isoformat() if start else None,
                until=end.isoformat() if end else None,
            )
            head = store.sign_head(records) if records else None
        finally:
            store.close()
    return render_report(
        records,
        contract,
        compliance,
        request.output_format,
        request.policies,
        request.since,
        request.until,
        now,
        subscriber,
        head,
        pinned_server_keys(agent.servers if agent else []),
    )


def pinned_server_keys(
    servers: Sequence[ServerConfig], given: Sequence[str] = ()
) -> dict[str, str]:
    """Pinned server receipt keys (key -> name): the configured servers' `public_key`, then
    NAME=KEY pairs given on the command line."""
    pinned = {s.public_key: s.name or s.url for s in servers if s.public_key}
    for item in given:
        name, sep, key = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--server-key must be NAME=KEY, not {item!r}")
        pinned[key] = name
    return pinned


def render_report(
    records: Sequence[dict[str, Any]],
    contract: Contract,
    config: ComplianceConfig,
    fmt: str = "html",
    policies: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
    subscriber: Subscriber | None = None,
    head: dict[str, Any] | None = None,
    server_keys: dict[str, str] | None = None,
) -> str:
    """The report on the records started in `[since, until]` (dates are whole local days);
    every record given is embedded with the export's signed `head`."""
    period = period_bounds(since, until, config.zone())
    report = build_report(
        records, contract, config, policies, period, now, subscriber, head, server_keys
    )
    return FORMATS[fmt](report)
