"""The earliest time a netprobe clock reading can be believed.

A Raspberry Pi without a real-time clock believes it is 1970 (or the last time fake-hwclock
saved) until NTP answers after boot. No netprobe result or scrape can be older than netprobe,
so a reading before `EARLIEST_PLAUSIBLE` is a clock not yet set: the agent waits before a test
(agent/clock.py) and the pusher stamps no scrape (push/pusher.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

EARLIEST_PLAUSIBLE = datetime(2026, 1, 1, tzinfo=UTC)
