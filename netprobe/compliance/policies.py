"""The policy table: one evaluator per regulator's rule, all with the same signature.

    verdicts = evaluate_all(records, contract, config)   # for config.policies, in order

An evaluator is a pure function `(records, contract, config) -> list[Verdict]` over stored
result dicts; adding a policy touches its own module and this table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from netprobe.compliance import au_accc, cn_miit, de_bnetza, eu_berec, us_fcc
from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.compliance.verdict import Verdict

Evaluator = Callable[[Iterable[dict[str, Any]], Contract, ComplianceConfig], list[Verdict]]

POLICIES: dict[str, Evaluator] = {
    cn_miit.POLICY: cn_miit.evaluate,
    de_bnetza.POLICY: de_bnetza.evaluate,
    us_fcc.POLICY: us_fcc.evaluate,
    eu_berec.POLICY: eu_berec.evaluate,
    au_accc.POLICY: au_accc.evaluate,
}


def evaluate_all(
    records: Sequence[dict[str, Any]],
    contract: Contract,
    config: ComplianceConfig,
    policies: Sequence[str] | None = None,
) -> list[Verdict]:
    """Verdicts of the given policies (default: the configured ones), in that order."""
    return [
        v
        for name in (policies or config.policies)
        for v in POLICIES[name](records, contract, config)
    ]
