"""When the next test runs (the `schedule:` section itself is in `netprobe.config`).

Intervals are drawn from an exponential distribution around a mean and clamped, so tests land
at random moments (no pattern an ISP could favour, no alignment with other probes) yet never
bunch up or leave long gaps:

    schedule = ScheduleConfig(mean_interval_seconds=3600, min_interval_seconds=600)
    delay = next_interval(schedule, random.Random())      # seconds until the next test

In BNetzA campaign mode (`compliance.de_bnetza.campaign.enabled`) the drawn delay is only a
lower bound: the test also waits for the series' next conforming slot, so the random schedule
fills the series without breaking its spacing rules:

    delay = campaign_delay(delay, plan_campaign(records, now, rules, zone), now)

`Planner` puts these together for the agent over its store: `first_delay`, `next_delay`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from netprobe.agent.metrics import AgentStatus
from netprobe.config import AgentConfig, ScheduleConfig
from netprobe.errors import StoreError
from netprobe.i18n import _
from netprobe.store import Store

if TYPE_CHECKING:
    from netprobe.compliance.campaign import CampaignPlan
    from netprobe.compliance.config import BnetzaCampaign


def next_interval(schedule: ScheduleConfig, rng: random.Random) -> float:
    """Seconds to the next test: exponential around the mean, clamped to [min, max]."""
    drawn = rng.expovariate(1.0 / schedule.mean_interval_seconds)
    return min(max(drawn, schedule.min_interval_seconds), schedule.max_interval_seconds)


def first_delay(
    schedule: ScheduleConfig, seconds_since_last: float | None, rng: random.Random
) -> float:
    """Seconds to the first test after a start.

    After downtime longer than the mean interval, missed tests are not replayed in a burst
    (that would measure the same moment many times); one test runs soon, after a short random
    delay that keeps a fleet of probes restarted together from testing in lockstep.
    """
    soon = rng.uniform(0.5, 1.0) * schedule.startup_delay_seconds
    if seconds_since_last is None or seconds_since_last >= schedule.mean_interval_seconds:
        return soon
    return max(soon, next_interval(schedule, rng) - seconds_since_last)


def campaign_delay(delay: float, plan: CampaignPlan, now: datetime) -> float:
    """Seconds to the next test in campaign mode: `delay`, but never before the next slot.

    Once the planned records hold a complete series the random schedule is back in force
    alone; the agent plans over the compliance window, so a new series is scheduled when the
    complete one has left that window (and the verdict would have nothing to stand on).
    """
    if plan.completed_campaigns or plan.next_slot is None:
        return delay
    return max(delay, (plan.next_slot - now).total_seconds())


def describe_campaign(plan: CampaignPlan, rules: BnetzaCampaign, zone: tzinfo) -> str:
    """The campaign's progress as one log line; the next slot on the line's local clock."""
    if plan.completed_campaigns or plan.next_slot is None:
        return (
            f"campaign: complete ({rules.required} measurements on {rules.days} days);"
            " back to the random schedule"
        )
    slot = plan.next_slot.astimezone(zone)
    opens_day = not plan.days or plan.days[-1].day != slot.date()
    deadline = f", deadline {plan.deadline}" if plan.deadline else ""
    return (
        f"campaign: {plan.done}/{plan.required} measurements,"
        f" day {len(plan.days) + opens_day} of {rules.days},"
        f" next slot at {slot:%Y-%m-%d %H:%M %Z}{deadline}"
    )


log = logging.getLogger("netprobe.agent")


class Planner:
    """The agent's delays to its next test: random, held back to a campaign's next slot."""

    def __init__(
        self,
        config: Callable[[], AgentConfig],
        store: Store,
        status: AgentStatus,
        rng: random.Random,
    ) -> None:
        self.config = config  # asked each time: a reload changes the schedule
        self.store = store
        self.status = status
        self.rng = rng

    def seconds_since_last_test(self, now: datetime) -> float | None:
        last = self.store.last("line")
        if last is None:
            return None
        started = datetime.fromisoformat(last["started_at"])
        return max((now - started).total_seconds(), 0.0)

    def first_delay(self, now: datetime) -> float:
        schedule = self.config().schedule
        delay = first_delay(schedule, self.seconds_since_last_test(now), self.rng)
        return self.with_campaign(delay, now)

    def next_delay(self, now: datetime) -> float:
        return self.with_campaign(next_interval(self.config().schedule, self.rng), now)

    def with_campaign(self, delay: float, now: datetime | None = None) -> float:
        """`delay`, held back to the campaign's next conforming slot when campaign mode is on.

        Planned afresh from the stored line results of the compliance window each time, so a
        restart, a skipped test or an invalid one simply moves the slot.
        """
        from netprobe.compliance.campaign import plan_campaign

        compliance = self.config().located_compliance()
        rules = compliance.de_bnetza.campaign
        if not rules.enabled:
            return delay
        now = now or datetime.now(UTC)
        since = now - timedelta(days=compliance.window_days)
        try:
            records = self.store.records(
                kind="line", since=since.isoformat(timespec="microseconds")
            )
        except StoreError as exc:
            self.status.store_errors += 1
            log.error(_("campaign not planned: %s"), exc)
            return delay
        plan = plan_campaign(records, now, rules, compliance.zone())
        log.info("%s", describe_campaign(plan, rules, compliance.zone()))
        return campaign_delay(delay, plan, now)
