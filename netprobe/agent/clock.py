"""Whether the system clock can be trusted to stamp a test.

A Raspberry Pi has no real-time clock: until NTP answers after boot, it believes it is 1970 (or
the last time fake-hwclock saved). A test stamped then lands mid-chain with a date that sorts
it years away from its neighbours, and its day and peak flag are wrong. So before each test the
agent waits, bounded, for a clock at or after `EARLIEST_PLAUSIBLE` (no netprobe result can be
older than netprobe), logs it, shows it in `netprobe_clock_plausible` and /-/healthy, and skips
the test (`netprobe_tests_skipped_total{reason="clock"}`) if the clock is still wrong:

    ok = await wait_for_clock(status, now=lambda: datetime.now(UTC), sleep=asyncio.sleep)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from netprobe.agent.metrics import AgentStatus
from netprobe.clock import EARLIEST_PLAUSIBLE

log = logging.getLogger("netprobe.agent")

CLOCK_WAIT_SECONDS = 600.0
CLOCK_POLL_SECONDS = 5.0


async def wait_for_clock(
    status: AgentStatus,
    *,
    now: Callable[[], datetime],
    sleep: Callable[[float], Awaitable[None]],
    max_wait_seconds: float = CLOCK_WAIT_SECONDS,
    poll_seconds: float = CLOCK_POLL_SECONDS,
) -> bool:
    """True once the clock is plausible; False (test skipped, counted) after the bound."""
    waited = 0.0
    while now() < EARLIEST_PLAUSIBLE:
        if status.clock_plausible:
            status.clock_plausible = False
            log.warning(
                "the clock says %s, before %s: waiting up to %.0f s for time sync before testing",
                now().isoformat(timespec="seconds"),
                EARLIEST_PLAUSIBLE.date(),
                max_wait_seconds,
            )
        if waited >= max_wait_seconds:
            status.tests_skipped["clock"] += 1
            log.warning("test skipped: the clock is still not plausible")
            return False
        await sleep(poll_seconds)
        waited += poll_seconds
    if not status.clock_plausible:
        status.clock_plausible = True
        log.info("the clock is plausible now (%s)", now().isoformat(timespec="seconds"))
    return True
