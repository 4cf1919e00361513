"""Tells a wall-clock jump from a glitch, so the push outbox follows a real jump and skips a glitch.

A Pi without RTC can be years off and then be stepped by NTP, in either direction; a single
scrape can also be stamped by a clock that is wrong for a moment. Each scrape carries the
offset between the wall clock and the monotonic clock at its stamp. A scrape whose offset left
the trusted one by more than `tolerance_seconds`, or that is stamped no later than what the
outbox already holds, is held back; once `confirmations` consecutive scrapes agree on the new
offset the jump is real: they are released in order and the new offset is trusted. A scrape
back on the trusted offset shows the jump was a glitch, and the held scrapes are dropped.

    guard = JumpGuard(tolerance_seconds=10.0, confirmations=3)
    verdict = guard.check(time.time() - time.monotonic(), scrape, behind_queue=False)
    for scrape in verdict.release: ...queue it...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class JumpVerdict(Generic[T]):
    """What to do with the scrapes so far: queue `release` (oldest first), drop `dropped`."""

    release: list[T] = field(default_factory=list)
    dropped: list[T] = field(default_factory=list)
    confirmed: bool = False  # `release` holds the scrapes that confirmed a jump


class JumpGuard(Generic[T]):
    """Holds scrapes stamped after a clock jump until later scrapes confirm or refute it."""

    def __init__(self, *, tolerance_seconds: float, confirmations: int) -> None:
        self._tolerance_seconds = tolerance_seconds
        self._confirmations = confirmations
        self._trusted_offset: float | None = None
        self._candidate_offset: float | None = None
        self._held: list[T] = []

    @property
    def holding(self) -> int:
        """Scrapes held back while a jump waits for confirmation."""
        return len(self._held)

    def check(self, offset_seconds: float, scrape: T, *, behind_queue: bool) -> JumpVerdict[T]:
        """The verdict on one scrape, stamped when the wall clock read monotonic + `offset_seconds`.

        `behind_queue`: the scrape is stamped no later than the newest queued one, which after
        a restart (no trusted offset yet) is the only sign that the clock went back.
        """
        verdict: JumpVerdict[T] = JumpVerdict()
        if not behind_queue and (
            self._trusted_offset is None
            or abs(offset_seconds - self._trusted_offset) <= self._tolerance_seconds
        ):
            self._trusted_offset = offset_seconds  # follows the slow slew of NTP
            self._candidate_offset = None
            verdict.dropped, self._held = self._held, []
            verdict.release = [scrape]
            return verdict
        if (
            self._candidate_offset is None
            or abs(offset_seconds - self._candidate_offset) > self._tolerance_seconds
        ):
            verdict.dropped, self._held = self._held, []  # another jump: the last one was a glitch
            self._candidate_offset = offset_seconds
        self._held.append(scrape)
        if len(self._held) >= self._confirmations:
            verdict.confirmed = True
            self._trusted_offset = offset_seconds
            self._candidate_offset = None
            verdict.release, self._held = self._held, []
        return verdict
