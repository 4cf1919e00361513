"""de-bnetza: the Bundesnetzagentur's 2021 rule for a significant deviation (fixed lines).

Over one complete measurement campaign (see `campaign.py`), per direction, a deviation if ANY:
(1) 90 % of the contracted maximum is not reached at least once on at least 2 of the 3 days;
(2) the normally available rate is reached in fewer than 90 % of the measurements;
(3) the contracted minimum is undercut on at least 2 of the 3 days.
A criterion whose rate the contract does not name is left out. The figures are the rule's;
they stay configurable (`compliance.de_bnetza`). A legally binding proof in Germany is made
with the Bundesnetzagentur's own desktop app; netprobe's verdict shows whether one is worth it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netprobe.compliance.campaign import campaigns
from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.series import Measurement, Series, reaches, series, share
from netprobe.compliance.verdict import Criterion, Verdict, verdict
from netprobe.i18n import _
from netprobe.results import DIRECTIONS
from netprobe.units import format_rate

POLICY = "de-bnetza"


def evaluate(
    records: Iterable[dict[str, Any]], contract: Contract, config: ComplianceConfig
) -> list[Verdict]:
    """One verdict per direction over the latest complete campaign."""
    policy = config.de_bnetza
    rules = policy.campaign
    zone = config.zone()
    records = list(records)
    *finished, current = campaigns(records, rules, zone)
    if finished:
        chosen = set(finished[-1].record_ids())
        note = ""
    else:
        chosen = set()
        done = sum(len(d.measurements) for d in current.days)
        note = _("no complete campaign yet: {done} of {required} measurements").format(
            done=done, required=rules.required
        )
    verdicts = []
    for direction in DIRECTIONS:
        measured = series(records, direction, zone)
        in_campaign = Series(
            direction,
            [m for m in measured.measurements if m.record_id in chosen],
            measured.failures,
            measured.invalid,
        )
        promised = contract.direction(direction)
        by_day: dict[Any, list[Measurement]] = {}
        for m in in_campaign.measurements:
            by_day.setdefault(m.day, []).append(m)
        best = [max(day, key=lambda m: m.bytes_per_second) for day in by_day.values()]
        worst = [min(day, key=lambda m: m.bytes_per_second) for day in by_day.values()]
        maximum = policy.max_share * promised.theoretical
        reached = [m for m in best if reaches(m.bytes_per_second, maximum)]
        criteria = [
            _decide(
                Criterion(
                    "maximum",
                    _(
                        "{share:.0%} of the contracted maximum {rate} reached at least once on "
                        "at least {needed} of {days} days"
                    ).format(
                        share=policy.max_share,
                        rate=format_rate(promised.theoretical),
                        needed=policy.max_days,
                        days=rules.days,
                    ),
                    len(reached) >= policy.max_days,
                    len(reached),
                    policy.max_days,
                    [m.record_id for m in best],
                    unit="days",
                ),
                note,
            )
        ]
        normal_share = None
        if promised.normal is not None:
            normal_share = share(in_campaign.measurements, promised.normal)
            passed = normal_share is not None and normal_share >= policy.normal_share
            criteria.append(
                _decide(
                    Criterion(
                        "normal",
                        _(
                            "normally available rate {rate} reached in at least {share:.0%} "
                            "of measurements"
                        ).format(rate=format_rate(promised.normal), share=policy.normal_share),
                        passed,
                        normal_share,
                        policy.normal_share,
                        [
                            m.record_id
                            for m in in_campaign.measurements
                            if reaches(m.bytes_per_second, promised.normal) == passed
                        ],
                    ),
                    note,
                )
            )
        if promised.minimum is not None:
            undercut = [m for m in worst if m.bytes_per_second < promised.minimum]
            criteria.append(
                _decide(
                    Criterion(
                        "minimum",
                        _(
                            "contracted minimum {rate} undercut on fewer than {needed} of {days} "
                            "days"
                        ).format(
                            rate=format_rate(promised.minimum),
                            needed=policy.minimum_days,
                            days=rules.days,
                        ),
                        len(undercut) < policy.minimum_days,
                        len(undercut),
                        policy.minimum_days,
                        [m.record_id for m in undercut],
                        unit="days",
                    ),
                    note,
                )
            )
        verdicts.append(
            verdict(
                POLICY,
                in_campaign,
                criteria,
                normal_share,
                {"campaign_days_reaching_maximum": float(len(reached))},
            )
        )
    return verdicts


def _decide(criterion: Criterion, note: str) -> Criterion:
    """Undecided while no campaign is complete."""
    if note:
        criterion.passed = None
        criterion.value = None
        criterion.deciding = []
        criterion.note = note
    return criterion
