"""The `compliance:` section of the configuration: which policies, with which thresholds.

Every threshold a regulation leaves open (or that netprobe had to interpret) is a field here
with a documented default, so a user can set the figure their regulator or contract uses:

    compliance:
      policies: [cn-miit, de-bnetza]
      timezone: Asia/Shanghai          # the line's local time: peak hours and measurement days
      cn_miit: {reach_share: 0.9, required_share: 0.9}
      de_bnetza: {campaign: {enabled: true}}

Peak windows are local wall-clock hours `[start_hour, end_hour)` in `timezone`, so a window
spanning a daylight-saving change still covers the same wall-clock hours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from netprobe.peak import PeakHours, line_zone

POLICY_NAMES = ("cn-miit", "de-bnetza", "us-fcc", "eu-berec", "au-accc")


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a share between 0 and 1, got {value!r}")


@dataclass
class PeakWindow:
    """Local hours `[start_hour, end_hour)`; `days: weekdays` leaves out Saturday and Sunday."""

    start_hour: int = 19
    end_hour: int = 23
    days: Literal["all", "weekdays"] = "all"

    def __post_init__(self) -> None:
        if not (0 <= self.start_hour <= 23 and 1 <= self.end_hour <= 24):
            raise ValueError("peak hours must lie within 0..24")
        if self.start_hour >= self.end_hour:
            raise ValueError("a peak window must end after it starts (no windows over midnight)")

    def hours(self) -> PeakHours:
        """This window in the one peak model the stored flag and the schedule use too."""
        return PeakHours.from_hours(
            self.start_hour, self.end_hour, weekdays_only=self.days == "weekdays"
        )


@dataclass
class CnMiitPolicy:
    """MIIT 524 asks that the access rate reach the contracted rate but states no figure.

    `reach_share` (X) is the fraction of the contracted theoretical rate a test must reach;
    `required_share` the fraction of valid tests, overall and in peak hours, that must reach
    it. Both default to 0.9, the figure commonly quoted, which is not in the regulation.
    """

    reach_share: float = 0.9
    required_share: float = 0.9
    min_tests: int = 10
    peak: PeakWindow = field(default_factory=PeakWindow)

    def __post_init__(self) -> None:
        _check_share("reach_share", self.reach_share)
        _check_share("required_share", self.required_share)


@dataclass
class BnetzaCampaign:
    """The BNetzA 2021 measurement series; the defaults are the Allgemeinverfügung's figures.

    `days` measurement days of `per_day` measurements each, at least `spacing_seconds` apart,
    with at least `break_seconds` between measurement `break_after` and the next of a day;
    at least `days_between` whole calendar days without measurements between two measurement
    days, and all days within `window_days` calendar days.
    """

    enabled: bool = False
    days: int = 3
    per_day: int = 10
    spacing_seconds: float = 300.0
    break_after: int = 5
    break_seconds: float = 3 * 3600.0
    days_between: int = 1
    window_days: int = 14

    @property
    def required(self) -> int:
        return self.days * self.per_day


@dataclass
class DeBnetzaPolicy:
    """BNetzA's three criteria per direction, over one complete measurement campaign."""

    max_share: float = 0.9
    max_days: int = 2
    normal_share: float = 0.9
    minimum_days: int = 2
    campaign: BnetzaCampaign = field(default_factory=BnetzaCampaign)


@dataclass
class UsFccPolicy:
    """FCC Measuring Broadband America: % of advertised and the 80/80 consistent speed."""

    consistent_percentile: float = 0.2
    consistent_share: float = 0.8
    min_tests: int = 5
    peak: PeakWindow = field(default_factory=lambda: PeakWindow(19, 23, "weekdays"))


@dataclass
class EuBerecPolicy:
    """BEREC leaves the availability of the normally available rate to each regulator.

    `rule: peak` (BEREC's first example): reached in `off_peak_share` of off-peak tests and
    `peak_share` of peak-hour tests; `rule: day`: reached in `day_share` of all tests.
    """

    rule: Literal["peak", "day"] = "peak"
    peak_share: float = 0.9
    off_peak_share: float = 1.0
    day_share: float = 0.95
    min_tests: int = 10
    peak: PeakWindow = field(default_factory=PeakWindow)


@dataclass
class AuAcccPolicy:
    """ACCC: a service is underperforming when it rarely reaches 75 % of the plan's download
    speed in busy hours; "rarely" is read as in fewer than `rarely_share` of busy-hour tests."""

    plan_share: float = 0.75
    rarely_share: float = 0.2
    min_tests: int = 5
    busy: PeakWindow = field(default_factory=PeakWindow)


@dataclass
class ComplianceConfig:
    """Policies to evaluate, the line's time zone, and each policy's thresholds.

    `timezone` is where the line is (peak hours, measurement days); unset, the agent uses
    `probe.timezone`, then the system's zone. `window_days` is the period the exported
    verdict metrics cover; reports cover the period asked for.
    """

    policies: list[str] = field(default_factory=lambda: ["cn-miit"])
    timezone: str | None = None
    window_days: int = 30
    cn_miit: CnMiitPolicy = field(default_factory=CnMiitPolicy)
    de_bnetza: DeBnetzaPolicy = field(default_factory=DeBnetzaPolicy)
    us_fcc: UsFccPolicy = field(default_factory=UsFccPolicy)
    eu_berec: EuBerecPolicy = field(default_factory=EuBerecPolicy)
    au_accc: AuAcccPolicy = field(default_factory=AuAcccPolicy)

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if p not in POLICY_NAMES]
        if unknown:
            raise ValueError(
                f"unknown policy {unknown[0]!r} (expected one of: {', '.join(POLICY_NAMES)})"
            )
        self.zone()

    def located(self, *fallbacks: str | None) -> ComplianceConfig:
        """This section with `timezone` defaulted to the first fallback set (`probe.timezone`)."""
        zone = next((z for z in (self.timezone, *fallbacks) if z), None)
        return dataclasses.replace(self, timezone=zone)

    def zone(self) -> ZoneInfo:
        """The line's local time zone: `timezone`, else the system's, else UTC."""
        return line_zone(self.timezone)
