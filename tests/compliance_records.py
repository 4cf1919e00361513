"""Line records for compliance and report tests, built with the real result model.

record("2026-03-02T19:30", tz="Europe/Berlin", down=95, up=38)   # rates in Mbit/s
record(..., down="fail:timeout")                                 # a failed direction
sealed = seal(records, key)                                      # the store's evidence chain
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from netprobe.compliance.evidence import GENESIS, ProbeKey, seal_record, sign_head, verify_chain
from netprobe.results import Conditions, DirectionResult, LineResult, Method, Server

Rate = float | str | None


def _direction(direction: str, rate: Rate) -> DirectionResult | None:
    method = Method(
        protocol="native",
        engine="netprobe",
        streams=4,
        warmup_rule="tcp-ramp",
        window_rule="fixed",
        aggregate="rmbt",
    )
    if rate is None:
        return None
    if isinstance(rate, str):
        reason = rate.removeprefix("fail:")
        return DirectionResult.failed(direction, reason, f"{direction} {reason}", method)  # type: ignore[arg-type]
    bytes_per_second = rate * 1e6 / 8
    return DirectionResult(
        direction=direction,  # type: ignore[arg-type]
        ok=True,
        bytes_per_second=bytes_per_second,
        bytes=int(bytes_per_second * 8),
        window_seconds=8.0,
        duration_seconds=10.0,
        total_bytes=int(bytes_per_second * 10),
        streams=4,
        method=method,
    )


def record(
    when: str | datetime,
    *,
    tz: str = "UTC",
    down: Rate = 100.0,
    up: Rate = 40.0,
    valid: bool = True,
    invalid_reason: str | None = None,
    ident: str | None = None,
) -> dict[str, Any]:
    """A line record started at local time `when` in `tz` (an aware datetime is taken as is)."""
    moment = when if isinstance(when, datetime) else datetime.fromisoformat(when)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    result = LineResult(
        server=Server(url="http://198.18.0.2:8080", name="lab", protocol="native"),
        download=_direction("download", down),
        upload=_direction("upload", up),
        idle_latency_seconds=0.004,
        conditions=Conditions(
            interface="eth0",
            link_type="ethernet",
            link_speed_bytes_per_second=125e6,
            cross_traffic_bytes_per_second=1200.0,
            cpu_percent=7.0,
        ),
        valid=valid,
        invalid_reason=invalid_reason if not valid else None,
        outcome="ok" if valid else "invalid",
        probe_id="probe-test",
        started_at=moment.astimezone(UTC).isoformat(timespec="microseconds"),
    )
    data = result.to_dict()
    if ident is not None:
        data["id"] = ident
    return data


def head_for(sealed: list[dict[str, Any]], key: ProbeKey) -> dict[str, Any]:
    """The signed export head the store would write for these sealed records."""
    return sign_head(verify_chain(sealed), key)


def seal(records: list[dict[str, Any]], key: ProbeKey) -> list[dict[str, Any]]:
    """The records as the store keeps them: each carries its evidence block."""
    sealed, prev = [], GENESIS
    for seq, body in enumerate(records, start=1):
        evidence = seal_record(body, seq, prev, key)
        sealed.append({**body, "evidence": evidence})
        prev = evidence["hash"]
    return sealed


def campaign(
    start: datetime, days: int, per_day: int, rng: random.Random, tz: str = "Europe/Berlin"
) -> list[dict[str, Any]]:
    """A plausible month of a 100/40 Mbit line: slower in the evening, a few bad tests."""
    out = []
    zone = ZoneInfo(tz)
    for day in range(days):
        base = datetime.combine((start + timedelta(days=day)).date(), datetime.min.time(), zone)
        for k in range(per_day):
            moment = base + timedelta(hours=24 * k / per_day + rng.uniform(0, 0.5))
            evening = 19 <= moment.hour < 23
            down = rng.uniform(70, 90) if evening else rng.uniform(88, 99)
            up = rng.uniform(30, 39)
            roll = rng.random()
            if roll < 0.04:
                out.append(record(moment, down="fail:timeout", up=None))
            elif roll < 0.08:
                out.append(
                    record(
                        moment, down=down / 2, up=up, valid=False, invalid_reason="cross_traffic"
                    )
                )
            else:
                out.append(record(moment, down=down, up=up))
    return out


# Ten local times that make one conforming BNetzA measurement day (5 minutes apart, 3 h break).
FULL_DAY = [
    "08:00",
    "08:10",
    "08:20",
    "08:30",
    "08:40",
    "12:00",
    "12:10",
    "12:20",
    "12:30",
    "12:40",
]
