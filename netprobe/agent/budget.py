"""The monthly data budget of a metered line: how much tests may still use this month.

Bytes of every stored result since the start of the current budget month are counted (line
tests and drive probes alike; the store keeps each record's bytes in an indexed column). A test runs only when its byte limit fits in what is left, so
the budget is never overshot; a test that does not fit is skipped and counted:

    budget = DataBudget(BudgetConfig(monthly=50e9, reset_day=1))
    budget.period_start(now)                       # the day the month's count started
    budget.allows(used_bytes=49.9e9, test_bytes=200e6)   # False
"""

from __future__ import annotations

from datetime import datetime

from netprobe.config import BudgetConfig


class DataBudget:
    """Decides whether a test fits in the month's remaining bytes."""

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config

    def period_start(self, now: datetime) -> datetime:
        """Midnight of the last reset day at or before `now` (in `now`'s time zone)."""
        start = now.replace(day=self.config.reset_day, hour=0, minute=0, second=0, microsecond=0)
        if start > now:
            year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
            start = start.replace(year=year, month=month)
        return start

    @property
    def monthly_bytes(self) -> int | None:
        return self.config.monthly

    def allows(self, used_bytes: int, test_bytes: int) -> bool:
        return self.config.monthly is None or used_bytes + test_bytes <= self.config.monthly
