"""Server selection: rank candidates by latency, use the fastest, fall back to the next.

A server that does not answer is dropped with its reason; when none is left the caller gets
one MeasurementError naming every server and why it failed, never a zero result:

    server, used = await choose(servers, probe=lambda s: ping(s), use=lambda s: connect(s))
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from netprobe.errors import MeasurementError

C = TypeVar("C")
R = TypeVar("R")


async def rank_by_latency(
    candidates: Sequence[C],
    probe: Callable[[C], Awaitable[float]],
    *,
    pings: int = 3,
    timeout_seconds: float = 5.0,
    name: Callable[[C], str] = str,
) -> tuple[list[tuple[C, float]], list[str]]:
    """(alive candidates with their median round trip, fastest first; why the others failed)."""

    async def measure(candidate: C) -> float:
        rtts = []
        for _ in range(pings):
            async with asyncio.timeout(timeout_seconds):
                rtts.append(await probe(candidate))
        return statistics.median(rtts)

    outcomes = await asyncio.gather(*(measure(c) for c in candidates), return_exceptions=True)
    alive: list[tuple[C, float]] = []
    failures: list[str] = []
    for candidate, outcome in zip(candidates, outcomes, strict=True):
        if isinstance(outcome, float):
            alive.append((candidate, outcome))
        elif isinstance(outcome, TimeoutError):
            failures.append(f"{name(candidate)}: no answer within {timeout_seconds:g} s")
        elif isinstance(outcome, MeasurementError | OSError):
            failures.append(f"{name(candidate)}: {outcome}")
        else:
            raise outcome
    alive.sort(key=lambda pair: pair[1])
    return alive, failures


async def choose(
    candidates: Sequence[C],
    probe: Callable[[C], Awaitable[float]],
    use: Callable[[C], Awaitable[R]],
    *,
    name: Callable[[C], str] = str,
    pings: int = 3,
) -> tuple[C, R]:
    """The fastest candidate that `use()` accepts, and what `use()` returned for it."""
    if not candidates:
        raise MeasurementError("no servers to choose from", reason="no_server")
    ranked, failures = await rank_by_latency(candidates, probe, pings=pings, name=name)
    for candidate, _ in ranked:
        try:
            return candidate, await use(candidate)
        except MeasurementError as exc:
            failures.append(f"{name(candidate)}: {exc}")
    raise MeasurementError(
        f"none of {len(candidates)} servers could be used: " + "; ".join(failures),
        reason="no_server",
    )
