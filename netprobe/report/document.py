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
from netprobe.compliance.evidence import (
    EvidenceError,
    SignerNotPinned,
    key_fingerprint,
    verify_export,
)
from netprobe.compliance.policies import evaluate_all
from netprobe.compliance.receipts import ReceiptCheck, check_records
from netprobe.compliance.series import parse_utc
from netprobe.compliance.verdict import Verdict
from netprobe.results import DIRECTIONS


@dataclass
class EvidenceState:
    """Whether the report's records verify as an unbroken, signed chain under a signed head.

    `verified` says the file is intact; who signed it is for the reader to pin (the key
    fingerprints are printed so that it can be compared with `netprobe evidence key`).
    """

    verified: bool
    checked: int
    public_keys: list[str]
    problem: str | None = None
    fingerprints: list[str] = dataclasses.field(default_factory=list)


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
    records: list[dict[str, Any]]  # embedded: a contiguous piece of chain
    evidence: EvidenceState
    period_records: list[dict[str, Any]]  # those started in the period: judged and shown
    export_head: dict[str, Any] | None = None
    receipts: dict[tuple[str, str], ReceiptCheck] = dataclasses.field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return self.config.zone()

    def line_records(self) -> list[dict[str, Any]]:
        return [r for r in self.period_records if r.get("kind", "line") == "line"]

    def receipt(self, record: dict[str, Any], direction: str) -> ReceiptCheck:
        """What the server's receipt says about one direction of a test."""
        return self.receipts.get((str(record.get("id")), direction), ReceiptCheck("none"))

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
            "probe": {
                "ids": self.probe_ids(),
                "public_keys": self.evidence.public_keys,
                "key_fingerprints": self.evidence.fingerprints,
            },
            "servers": self.servers(),
            "contract": self.contract.to_dict(),
            "policies": self.policies,
            "policy_settings": dataclasses.asdict(self.config),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "campaign": self.campaign.to_dict() if self.campaign else None,
            "evidence": dataclasses.asdict(self.evidence),
            "receipts": [
                {"id": record_id, "direction": direction, "status": check.describe()}
                for (record_id, direction), check in self.receipts.items()
            ],
            "export_head": self.export_head,
            "period_records": [r.get("id") for r in self.period_records],
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


def check_evidence(records: Sequence[dict[str, Any]], head: dict[str, Any] | None) -> EvidenceState:
    """Verify the chain of the records and their head; a failure is reported, not raised."""
    keys = sorted(
        {
            str(r["evidence"].get("public_key"))
            for r in records
            if isinstance(r.get("evidence"), dict)
        }
    )
    fingerprints = [key_fingerprint(k) for k in keys]
    if not records:
        return EvidenceState(False, 0, keys, "no records", fingerprints)
    try:
        verify_export(list(records), head)
    except SignerNotPinned:
        pass  # intact; the reader pins the signer with `netprobe report verify --public-key`
    except EvidenceError as exc:
        return EvidenceState(False, 0, keys, str(exc), fingerprints)
    return EvidenceState(True, len(records), keys, None, fingerprints)


def build_report(
    records: Sequence[dict[str, Any]],
    contract: Contract,
    config: ComplianceConfig,
    policies: Sequence[str] | None = None,
    period: tuple[datetime | None, datetime | None] = (None, None),
    now: datetime | None = None,
    head: dict[str, Any] | None = None,
    server_keys: dict[str, str] | None = None,
) -> Report:
    """Evaluate the records started in the period under the policies; embed all `records`
    (the export they came from, with its signed `head`). `server_keys` pins the servers whose
    receipts confirm tests (public key -> name)."""
    now = now or datetime.now(UTC)
    chosen = list(policies or config.policies)
    records = list(records)
    shown = in_period(records, period)
    line = [r for r in shown if r.get("kind", "line") == "line"]
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
        evidence=check_evidence(records, head),
        period_records=shown,
        export_head=head,
        receipts={
            (str(record.get("id")), direction): check
            for record, direction, check in check_records(line, server_keys or {})
        },
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
                    "server_receipt": report.receipt(record, direction).describe(),
                    "hash": evidence.get("hash", ""),
                }
            )
    return rows
