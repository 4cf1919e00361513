"""Campaign mode in the agent: the random delay is held back to the BNetzA series' next
conforming slot, planned from the real store at a fixed moment; no network, no waiting."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from compliance_records import FULL_DAY, record

from netprobe.agent.main import Agent
from netprobe.agent.scheduler import ScheduleConfig, next_interval
from netprobe.config import AgentConfig
from netprobe.configschema import build
from netprobe.store import Store

BERLIN = "Europe/Berlin"
# A schedule whose draws (30-120 s) are shorter than every campaign gap.
SHORT = {"mean_interval": 60.0, "min_interval": 30.0, "max_interval": 120.0}


def local(text: str, tz: str = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def day(date: str, slots: list[str] = FULL_DAY) -> list[dict[str, Any]]:
    return [record(f"{date}T{s}", tz=BERLIN, ident=f"{date}/{s}") for s in slots]


def make_agent(
    tmp_path: Path, records: list[dict[str, Any]], *, enabled: bool = True, tz: str = BERLIN
) -> Agent:
    config = build(
        AgentConfig,
        {
            "contract": {"download": "100Mbit", "upload": "40Mbit"},
            "servers": [{"url": "http://127.0.0.1:9", "name": "unused"}],
            "schedule": {**SHORT, "startup_delay": 1.0},
            "store": {"path": str(tmp_path / "results.db")},
            "compliance": {"timezone": tz, "de_bnetza": {"campaign": {"enabled": enabled}}},
        },
        file="agent.yml",
    )
    agent = Agent(tmp_path / "agent.yml", config, rng=random.Random(7))
    agent.store = Store(tmp_path / "results.db")
    for item in records:
        agent.store.add(item)
    return agent


def draw() -> float:
    """The random delay the agent's seeded generator draws first."""
    return next_interval(
        ScheduleConfig(**{f"{k}_seconds": v for k, v in SHORT.items()}), random.Random(7)
    )


def test_campaign_disabled_leaves_the_random_delay_unchanged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(tmp_path, day("2026-03-02", FULL_DAY[:3]), enabled=False)
    caplog.set_level(logging.INFO, "netprobe.agent")
    delay = next_interval(agent.config.schedule, agent.rng)
    assert delay == draw()
    assert agent.with_campaign(delay, local("2026-03-02T08:21")) == delay
    assert "campaign" not in caplog.text


def test_next_test_keeps_five_minutes_from_the_last(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(tmp_path, day("2026-03-02", FULL_DAY[:3]))
    caplog.set_level(logging.INFO, "netprobe.agent")
    now = local("2026-03-02T08:21")
    delay = agent.with_campaign(draw(), now)
    assert delay == 240.0  # 08:25, five minutes after the 08:20 test, not the 30-120 s draw
    assert now + timedelta(seconds=delay) - local("2026-03-02T08:20") >= timedelta(minutes=5)
    assert "campaign: 3/30 measurements, day 1 of 3, next slot at 2026-03-02 08:25 CET" in (
        caplog.text
    )
    # A random delay beyond the slot is kept as drawn: the slot is a lower bound only.
    assert agent.with_campaign(3600.0, now) == 3600.0


def test_three_hours_between_the_fifth_and_sixth_test_of_a_day(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, day("2026-03-02", FULL_DAY[:5]))
    now = local("2026-03-02T08:41")
    delay = agent.with_campaign(draw(), now)
    assert now + timedelta(seconds=delay) == local("2026-03-02T11:40")
    assert now + timedelta(seconds=delay) - local("2026-03-02T08:40") >= timedelta(hours=3)


def test_a_full_day_waits_for_the_day_after_the_free_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(tmp_path, day("2026-03-02"))
    caplog.set_level(logging.INFO, "netprobe.agent")
    now = local("2026-03-02T13:00")
    delay = agent.with_campaign(draw(), now)
    assert now + timedelta(seconds=delay) == local("2026-03-04T00:00")
    assert "campaign: 10/30 measurements, day 2 of 3, next slot at 2026-03-04 00:00 CET" in (
        caplog.text
    )


def test_a_complete_series_returns_to_the_random_schedule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = day("2026-03-02") + day("2026-03-04") + day("2026-03-06")
    records.append(record("2026-03-07T09:00", tz=BERLIN, ident="after"))  # a new series begins
    agent = make_agent(tmp_path, records)
    caplog.set_level(logging.INFO, "netprobe.agent")
    for now in ("2026-03-06T13:00", "2026-03-07T09:01"):
        assert agent.with_campaign(draw(), local(now)) == draw()
    assert "campaign: complete (30 measurements on 3 days); back to the random schedule" in (
        caplog.text
    )


async def test_the_schedule_loop_waits_for_the_slot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A zone where it is about noon now, so the series' day cannot roll over under the test.
    now = datetime.now(UTC)
    offset = (12 - now.hour + 12) % 24 - 12
    zone = f"Etc/GMT{-offset:+d}"
    fifth = now - timedelta(minutes=1)
    records = [record(fifth - timedelta(minutes=10 * k), ident=str(k)) for k in range(5)]
    agent = make_agent(tmp_path, records, tz=zone)
    caplog.set_level(logging.INFO, "netprobe.agent")
    loop = asyncio.ensure_future(agent.schedule_loop())
    async with asyncio.timeout(60):
        while "next test in" not in caplog.text:
            await asyncio.sleep(0.01)
        agent.stop()
        await loop
    assert "campaign: 5/30 measurements, day 1 of 3" in caplog.text
    waited = re.search(r"next test in (\d+) s", caplog.text)
    assert waited is not None
    slot = (fifth + timedelta(hours=3) - now).total_seconds()  # 2 h 59 min, not the 1 s start
    assert slot - 60 <= float(waited[1]) <= slot + 1
