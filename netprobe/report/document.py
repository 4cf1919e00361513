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
from netprobe.compliance.campaign import CampaignPlan, campaigns, plan_campaign
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
from netprobe.i18n import _
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


@dataclass(frozen=True)
class Subscriber:
    """Who the line belongs to, as the contract names it (all optional config fields)."""

    operator: str = ""
    plan: str = ""
    account: str = ""
    service_address: str = ""


@dataclass
class PolicyAccount:
    """For one policy: the tests its verdicts counted, and every other test with the reason."""

    policy: str
    counted: list[str]
    not_counted: dict[str, str]
    note: str = ""


@dataclass
class Report:
    """Everything a report shows.

    `as_of` is the moment the report describes: the end of its period, else its newest test.
    Everything time-dependent (the campaign's progress) is computed as of then, never as of
    the moment the file is written, so the same input gives the same report next month.
    """

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
    as_of: datetime
    export_head: dict[str, Any] | None = None
    receipts: dict[tuple[str, str], ReceiptCheck] = dataclasses.field(default_factory=dict)
    subscriber: Subscriber = Subscriber()
    accounts: list[PolicyAccount] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        return self.config.zone()

    def line_records(self) -> list[dict[str, Any]]:
        return [r for r in self.period_records if r.get("kind", "line") == "line"]

    def receipt(self, record: dict[str, Any], direction: str) -> ReceiptCheck:
        """What the server's receipt says about one direction of a test."""
        return self.receipts.get((str(record.get("id")), direction), ReceiptCheck("none"))

    def shown_period(self) -> tuple[datetime | None, datetime | None]:
        """The period's bounds, or where absent the first and the last test's start."""
        since, until = self.period
        starts = [parse_utc(r["started_at"]) for r in self.period_records]
        return (since or min(starts, default=None), until or max(starts, default=None))

    def imported_ids(self) -> list[str]:
        """Tests imported from another tool (their `source` names it), not measured by netprobe."""
        return [str(r.get("id")) for r in self.records if isinstance(r.get("source"), dict)]

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
            "as_of": self.as_of.isoformat(),
            "timezone": self.zone.key,
            "subscriber": dataclasses.asdict(self.subscriber),
            "warnings": self.warnings,
            "accounts": [dataclasses.asdict(a) for a in self.accounts],
            "imported": self.imported_ids(),
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
    subscriber: Subscriber | None = None,
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
    latest = max((parse_utc(r["started_at"]) for r in shown), default=None)
    as_of = period[1] or (latest + timedelta(seconds=1) if latest else now)
    campaign = (
        plan_campaign(line, as_of, config.de_bnetza.campaign, config.zone())
        if "de-bnetza" in chosen
        else None
    )
    verdicts = evaluate_all(line, contract, config, chosen)
    return Report(
        generated_at=now,
        period=period,
        contract=contract,
        config=config,
        policies=chosen,
        verdicts=verdicts,
        campaign=campaign,
        records=records,
        evidence=check_evidence(records, head),
        period_records=shown,
        export_head=head,
        receipts={
            (str(record.get("id")), direction): check
            for record, direction, check in check_records(line, server_keys or {})
        },
        as_of=as_of,
        subscriber=subscriber or Subscriber(),
        accounts=[_account(p, line, config) for p in chosen],
        warnings=contract_warnings(contract, chosen),
    )


def contract_warnings(contract: Contract, policies: Sequence[str]) -> list[str]:
    """What the contract lacks that a chosen policy would judge, in the language in use."""
    warnings = []
    if "de-bnetza" in policies:
        if all(contract.rate(d, "normal") is None for d in DIRECTIONS):
            warnings.append(
                _(
                    "de-bnetza: the contract names no normally available rate, so the 90 % "
                    "criterion is not judged; add contract.normal to the configuration"
                )
            )
        if all(contract.rate(d, "minimum") is None for d in DIRECTIONS):
            warnings.append(
                _(
                    "de-bnetza: the contract names no minimum rate, so the minimum criterion "
                    "is not judged; add contract.minimum to the configuration"
                )
            )
    if "eu-berec" in policies and all(contract.rate(d, "normal") is None for d in DIRECTIONS):
        warnings.append(
            _(
                "eu-berec: the contract names no normally available rate; the advertised "
                "rate is used in its place"
            )
        )
    return warnings


def _exclusion(record: dict[str, Any]) -> str | None:
    """Why a test counts for no policy (failed or invalid), or None when it can count."""
    failed = [
        _("{direction} failed: {reason}").format(
            direction=_(d), reason=part.get("reason") or _("unknown")
        )
        for d in DIRECTIONS
        if isinstance(part := record.get(d), dict) and not part.get("ok")
    ]
    if failed:
        return "; ".join(failed)
    if record.get("valid") is False:
        return _("invalid: {reason}").format(reason=record.get("invalid_reason") or _("unknown"))
    return None


def _account(policy: str, line: list[dict[str, Any]], config: ComplianceConfig) -> PolicyAccount:
    not_counted = {str(r.get("id")): why for r in line if (why := _exclusion(r)) is not None}
    usable = [r for r in line if str(r.get("id")) not in not_counted]
    if policy != "de-bnetza":
        return PolicyAccount(policy, [str(r.get("id")) for r in usable], not_counted)
    rules = config.de_bnetza.campaign
    zone = config.zone()
    *finished, current = campaigns(line, rules, zone)
    counted = set(finished[-1].record_ids()) if finished else set()
    earlier = {i for c in finished[:-1] for i in c.record_ids()}
    in_progress = set(current.record_ids())
    full_days = {
        d.day for c in [*finished, current] for d in c.days if len(d.measurements) >= rules.per_day
    }
    for record in usable:
        ident = str(record.get("id"))
        if ident in counted:
            continue
        day = parse_utc(record["started_at"]).astimezone(zone).date()
        if ident in in_progress:
            why = _("in the campaign still in progress: not judged until it is complete")
        elif ident in earlier:
            why = _("in an earlier complete campaign: the latest one is judged")
        elif day in full_days:
            why = _(
                "beyond the day's {count} campaign measurements: BNetzA counts {count} a day"
            ).format(count=rules.per_day)
        else:
            why = _(
                "not part of a campaign series: it breaks a spacing rule ({minutes:g} min "
                "between tests, {hours:g} h after a day's {after}th), or its day did not reach "
                "{count} measurements"
            ).format(
                minutes=rules.spacing_seconds / 60,
                hours=rules.break_seconds / 3600,
                after=rules.break_after,
                count=rules.per_day,
            )
        not_counted[ident] = why
    note = "" if finished else _("no complete campaign yet, so no test is judged")
    return PolicyAccount(policy, sorted(counted), not_counted, note)
