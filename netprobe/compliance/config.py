"""The `compliance:` section of the configuration (which policies, with which thresholds)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ComplianceConfig:
    """Policies to evaluate."""

    policies: list[str] = field(default_factory=lambda: ["cn-miit"])
