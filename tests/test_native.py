"""The native protocol client against `netprobe serve` in-process on loopback."""

from __future__ import annotations

import asyncio
import gc

import pytest

from netprobe.measure.engine import EngineOptions
from netprobe.measure.native import NativeBackend
from netprobe.serve.app import bound_port, start_server


@pytest.fixture
async def served():
    """A NativeBackend against an in-process server, and every error the loop saw unhandled."""
    orphans: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: orphans.append(ctx))
    runner = await start_server("127.0.0.1", 0)
    backend = NativeBackend(f"http://127.0.0.1:{bound_port(runner)}")
    await backend.connect()
    yield backend, orphans
    await runner.cleanup()


async def settle() -> None:
    await asyncio.sleep(0.2)
    gc.collect()  # "never retrieved" is reported when the task is collected
    await asyncio.sleep(0)


@pytest.mark.parametrize("direction", ["download", "upload"])
async def test_a_cancelled_test_leaves_no_orphaned_errors(served, direction):
    backend, orphans = served
    # A fixed 60 s window: the test is surely still running when it is cancelled (with the
    # adaptive stop a loopback test can be over within the second).
    options = EngineOptions(streams=4, max_bytes=10**12, duration_seconds=60.0)
    test = asyncio.create_task(backend.measure(direction, options))
    await asyncio.sleep(1.0)
    assert not test.done()
    test.cancel()
    with pytest.raises(asyncio.CancelledError):
        await test
    await settle()
    assert orphans == []


@pytest.mark.parametrize("direction", ["download", "upload"])
async def test_a_budget_spent_in_warm_up_fails_cleanly(served, direction):
    backend, orphans = served
    result = await backend.measure(direction, EngineOptions(streams=4, max_bytes=5_000_000))
    await settle()
    assert not result.ok and result.reason == "budget"
    assert orphans == []
