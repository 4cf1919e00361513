"""What an evaluator returns: a verdict per policy and direction, with the criteria behind it.

A criterion passes, fails, or cannot be decided yet (`passed is None`: too few tests). A
verdict is a deviation as soon as one criterion fails, compliant when every criterion passed,
and undecided otherwise. Each criterion names the tests that decided it, so a report can show
the evidence next to the finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netprobe.compliance.series import Series
from netprobe.results import Direction


@dataclass
class Criterion:
    """One rule of a policy, evaluated; `value` and `required` are shares (0–1) unless `unit`
    names what they count (e.g. "days")."""

    name: str
    description: str
    passed: bool | None
    value: float | None = None
    required: float | None = None
    deciding: list[str] = field(default_factory=list)
    note: str = ""
    unit: str = "share"


@dataclass
class Verdict:
    """A policy's finding for one direction of the line."""

    policy: str
    direction: Direction
    compliant: bool | None
    share: float | None
    valid_tests: int
    failed_tests: int
    invalid_tests: int
    criteria: list[Criterion]
    failures: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    figures: dict[str, float | None] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return {True: "compliant", False: "deviation", None: "undecided"}[self.compliant]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "direction": self.direction,
            "status": self.status,
            "compliant": self.compliant,
            "share": self.share,
            "valid_tests": self.valid_tests,
            "failed_tests": self.failed_tests,
            "invalid_tests": self.invalid_tests,
            "failures": self.failures,
            "invalid": self.invalid,
            "figures": self.figures,
            "criteria": [vars(c) for c in self.criteria],
        }


def combine(criteria: Sequence[Criterion]) -> bool | None:
    """Deviation if any criterion failed, compliant if all passed, else undecided."""
    if any(c.passed is False for c in criteria):
        return False
    if all(c.passed is True for c in criteria):
        return True
    return None


def verdict(
    policy: str,
    measured: Series,
    criteria: list[Criterion],
    share: float | None,
    figures: dict[str, float | None] | None = None,
) -> Verdict:
    """A verdict for `measured` from its evaluated criteria."""
    return Verdict(
        policy=policy,
        direction=measured.direction,
        compliant=combine(criteria),
        share=share,
        valid_tests=len(measured.measurements),
        failed_tests=measured.failed_tests,
        invalid_tests=measured.invalid_tests,
        criteria=criteria,
        failures=dict(measured.failures),
        invalid=dict(measured.invalid),
        figures=figures or {},
    )
