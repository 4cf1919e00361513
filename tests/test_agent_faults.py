"""The agent keeps going and says what is wrong: a push loop that fails, a clock not yet set."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netprobe.agent.clock import wait_for_clock
from netprobe.agent.main import Agent
from netprobe.agent.metrics import AgentMetrics, AgentStatus
from netprobe.clock import EARLIEST_PLAUSIBLE
from netprobe.config import AgentConfig
from netprobe.configschema import build
from netprobe.store import Store


async def test_a_failing_push_loop_is_logged_counted_retried_and_unhealthy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build(
        AgentConfig,
        {
            "contract": {"download": "100Mbit", "upload": "40Mbit"},
            "servers": [{"url": "http://127.0.0.1:9"}],
            "store": {"path": str(tmp_path / "results.db")},
            "push": {"url": "http://127.0.0.1:9/api/v1/write"},
        },
        file="agent.yml",
    )
    (tmp_path / "push-outbox.db").mkdir()  # an outbox that cannot be opened
    agent = Agent(tmp_path / "agent.yml", config)
    agent.store = Store(tmp_path / "results.db")
    caplog.set_level(logging.ERROR, "netprobe.agent")
    pushing = asyncio.ensure_future(agent.push_forever())
    try:
        async with asyncio.timeout(30):
            while agent.status.push_loop_failures < 1:
                await asyncio.sleep(0.05)
        assert not pushing.done()  # it waits to retry instead of dying
        assert agent.status.problems() and agent.status.problems()[0].startswith("push: ")
        assert "push loop stopped, retrying in 5 s" in caplog.text
        families = {m.name: m for m in AgentMetrics(agent.status).collect()}
        assert families["netprobe_push_loop_failures"].samples[0].value == 1
    finally:
        agent.stop()
        await asyncio.wait_for(pushing, 10)
        agent.store.close()


async def test_no_test_before_the_clock_is_plausible(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "netprobe.agent")
    status = AgentStatus()
    clock = [datetime(1970, 1, 1, 0, 0, 12, tzinfo=UTC)]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:  # time sync arrives after three polls
            clock[0] = EARLIEST_PLAUSIBLE + timedelta(days=400)

    assert await wait_for_clock(status, now=lambda: clock[0], sleep=sleep, poll_seconds=5)
    assert slept == [5, 5, 5] and status.clock_plausible
    assert "waiting up to 600 s for time sync" in caplog.text
    assert "the clock is plausible now" in caplog.text

    # Never synced: bounded, the test is skipped and counted, health and the gauge say so.
    clock[0] = datetime(1970, 1, 1, tzinfo=UTC)
    slept.clear()

    async def no_sync(seconds: float) -> None:
        slept.append(seconds)

    assert not await wait_for_clock(
        status, now=lambda: clock[0], sleep=no_sync, max_wait_seconds=20, poll_seconds=5
    )
    assert sum(slept) == 20 and status.tests_skipped["clock"] == 1
    assert status.problems() == ["clock: not yet plausible (waiting for time sync)"]
    families = {m.name: m for m in AgentMetrics(status).collect()}
    assert families["netprobe_clock_plausible"].samples[0].value == 0
