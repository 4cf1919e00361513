"""The native protocol client against `netprobe serve` in-process on loopback."""

from __future__ import annotations

import asyncio
import gc

import pytest

from netprobe.measure.engine import EngineOptions
from netprobe.measure.native import NativeBackend
from netprobe.serve.app import bound_port, start_server


@pytest.mark.parametrize("direction", ["download", "upload"])
async def test_a_cancelled_test_leaves_no_orphaned_errors(direction):
    loop = asyncio.get_running_loop()
    orphans: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: orphans.append(context))
    runner = await start_server("127.0.0.1", 0)
    try:
        backend = NativeBackend(f"http://127.0.0.1:{bound_port(runner)}")
        await backend.connect()
        test = asyncio.create_task(
            backend.measure(direction, EngineOptions(streams=4, max_bytes=10**12))
        )
        await asyncio.sleep(1.0)
        test.cancel()
        with pytest.raises(asyncio.CancelledError):
            await test
        await asyncio.sleep(0.2)
        gc.collect()  # "never retrieved" is reported when the task is collected
        await asyncio.sleep(0)
    finally:
        await runner.cleanup()
    assert orphans == []


@pytest.mark.parametrize("direction", ["download", "upload"])
async def test_a_budget_spent_in_warm_up_fails_cleanly(direction):
    loop = asyncio.get_running_loop()
    orphans: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: orphans.append(context))
    runner = await start_server("127.0.0.1", 0)
    try:
        backend = NativeBackend(f"http://127.0.0.1:{bound_port(runner)}")
        await backend.connect()
        result = await backend.measure(direction, EngineOptions(streams=4, max_bytes=50_000_000))
        await asyncio.sleep(0.2)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        await runner.cleanup()
    assert not result.ok and result.reason == "budget"
    assert orphans == []
