"""What a compliance report says, independent of its format (HTML, JSON, CSV).

    report = build_report(records, contract, config, policies=["cn-miit"], period=(since, until))

A report holds the verdicts, the campaign progress when de-bnetza is asked for, the identity
of the probe and of the servers, the state of the evidence chain, and every record in the
period with its evidence block, so the file itself can be checked with `netprobe report verify`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from netprobe import __version__
from netprobe.compliance.campaign import CampaignPlan, plan_campaign
from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.evidence import EvidenceError, verify_chain
from netprobe.compliance.policies import evaluate_all
from netprobe.compliance.series import parse_utc
from netprobe.compliance.verdict import Verdict
from netprobe.results import DIRECTIONS


@dataclass
class EvidenceState:
    """Whether the report's records verify as an unbroken, signed chain."""

    verified: bool
    checked: int
    public_keys: list[str]
    problem: str | None = None


@dataclass
class Report:
    """Everything a report shows."""

    generated_at: datetime
    period: tuple[datetime | None, datetime | None]
    contract: Contract
    config: ComplianceConfig
    policies: list[str]
    verdicts: list[Verdict]
    campaign: CampaignPlan | None
    records: list[dict[str, Any]]
    evidence: EvidenceState

    @property
    def zone(self) -> ZoneInfo:
        return self.config.zone()

    def line_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind", "line") == "line"]

    def probe_ids(self) -> list[str]:
        return sorted({str(r.get("probe_id") or "") for r in self.records} - {""})

    def servers(self) -> list[dict[str, str]]:
        """The distinct servers measured against (name, URL, protocol, version)."""
        seen: dict[tuple[str, ...], dict[str, str]] = {}
        for record in self.line_records():
            server = record.get("server") or {}
            entry = {k: str(server.get(k) or "") for k in ("name", "url", "protocol", "version")}
            seen.setdefault(tuple(entry.values()), entry)
        return list(seen.values())

    def to_dict(self) -> dict[str, Any]:
        since, until = self.period
        return {
            "netprobe_report": 1,
            "generated_at": self.generated_at.isoformat(),
            "generator": f"netprobe {__version__}",
            "period": {
                "from": since.isoformat() if since else None,
                "to": until.isoformat() if until else None,
            },
            "timezone": self.zone.key,
            "probe": {"ids": self.probe_ids(), "public_keys": self.evidence.public_keys},
            "servers": self.servers(),
            "contract": self.contract.to_dict(),
            "policies": self.policies,
            "policy_settings": dataclasses.asdict(self.config),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "campaign": self.campaign.to_dict() if self.campaign else None,
            "evidence": dataclasses.asdict(self.evidence),
            "records": self.records,
        }


def period_bounds(
    since: str | None, until: str | None, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """UTC bounds from --from/--to: a date is a whole local day (`--to` inclusive), a time as is."""
    return _bound(since, zone, 0), _bound(until, zone, 1)


def _bound(text: str | None, zone: ZoneInfo, days_after: int) -> datetime | None:
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    start = datetime.combine(day + timedelta(days=days_after), time(0), tzinfo=zone)
    return start.astimezone(UTC)


def in_period(
    records: Sequence[dict[str, Any]], period: tuple[datetime | None, datetime | None]
) -> list[dict[str, Any]]:
    """The records started within `[since, until)`."""
    since, until = period
    return [
        r
        for r in records
        if (since is None or parse_utc(r["started_at"]) >= since)
        and (until is None or parse_utc(r["started_at"]) < until)
    ]


def check_evidence(records: Sequence[dict[str, Any]]) -> EvidenceState:
    """Verify the chain of the records; a failure is reported, not raised."""
    keys = sorted(
        {
            str(r["evidence"].get("public_key"))
            for r in records
            if isinstance(r.get("evidence"), dict)
        }
    )
    try:
        checked = verify_chain(records)
    except EvidenceError as exc:
        return EvidenceState(False, 0, keys, str(exc))
    return EvidenceState(checked > 0, checked, keys, None if checked else "no records")


def build_report(
    records: Sequence[dict[str, Any]],
    contract: Contract,
    config: ComplianceConfig,
    policies: Sequence[str] | None = None,
    period: tuple[datetime | None, datetime | None] = (None, None),
    now: datetime | None = None,
) -> Report:
    """Evaluate `records` (already limited to the period) under the policies."""
    now = now or datetime.now(UTC)
    chosen = list(policies or config.policies)
    records = list(records)
    line = [r for r in records if r.get("kind", "line") == "line"]
    campaign = (
        plan_campaign(line, now, config.de_bnetza.campaign, config.zone())
        if "de-bnetza" in chosen
        else None
    )
    return Report(
        generated_at=now,
        period=period,
        contract=contract,
        config=config,
        policies=chosen,
        verdicts=evaluate_all(line, contract, config, chosen),
        campaign=campaign,
        records=records,
        evidence=check_evidence(records),
    )


def direction_rows(report: Report) -> list[dict[str, Any]]:
    """One row per line test and direction: the figures, conditions and method behind it."""
    rows = []
    zone = report.zone
    for record in report.line_records():
        started = parse_utc(record["started_at"])
        conditions = record.get("conditions") or {}
        server = record.get("server") or {}
        evidence = record.get("evidence") or {}
        for direction in DIRECTIONS:
            result = record.get(direction)
            if not isinstance(result, dict):
                continue
            method = result.get("method") or {}
            rate = result.get("bytes_per_second") if result.get("ok") else None
            theoretical = report.contract.direction(direction).theoretical
            rows.append(
                {
                    "id": record.get("id", ""),
                    "seq": evidence.get("seq"),
                    "started_at_utc": started.isoformat(),
                    "started_at_local": started.astimezone(zone).isoformat(),
                    "direction": direction,
                    "valid": bool(record.get("valid", True)),
                    "invalid_reason": record.get("invalid_reason") or "",
                    "ok": bool(result.get("ok")),
                    "failure_reason": "" if result.get("ok") else result.get("reason") or "",
                    "bytes_per_second": rate,
                    "share_of_contract": rate / theoretical if rate is not None else None,
                    "window_seconds": result.get("window_seconds"),
                    "bytes": result.get("bytes"),
                    "streams": result.get("streams"),
                    "protocol": method.get("protocol", ""),
                    "warmup_rule": method.get("warmup_rule", ""),
                    "window_rule": method.get("window_rule", ""),
                    "aggregate": method.get("aggregate", ""),
                    "loaded_latency_seconds": result.get("loaded_latency_seconds"),
                    "idle_latency_seconds": record.get("idle_latency_seconds"),
                    "link_type": conditions.get("link_type") or "",
                    "link_speed_bytes_per_second": conditions.get("link_speed_bytes_per_second"),
                    "cross_traffic_bytes_per_second": conditions.get(
                        "cross_traffic_bytes_per_second"
                    ),
                    "cpu_percent": conditions.get("cpu_percent"),
                    "held_seconds": conditions.get("held_seconds"),
                    "server_name": server.get("name", ""),
                    "server_url": server.get("url", ""),
                    "probe_id": record.get("probe_id", ""),
                    "hash": evidence.get("hash", ""),
                }
            )
    return rows
