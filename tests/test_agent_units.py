"""The agent's decisions on their own: schedule, gates (fixture counters and a fixture sysfs
tree, a fake clock), conditions that make a result invalid, and the data budget."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netprobe.agent.budget import BudgetConfig, DataBudget
from netprobe.agent.gates import (
    Gates,
    GatesConfig,
    Link,
    cross_traffic_during,
    default_interface,
    invalid_reason,
    read_link,
)
from netprobe.agent.scheduler import ScheduleConfig, first_delay, next_interval


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def counters(rates: list[float], fake: FakeTime) -> tuple[object, list[float]]:
    """Interface bytes growing at rates[i] B/s during the i-th 10-second stretch."""

    def read(interface: str) -> int:
        total, t = 0.0, 0.0
        for rate in rates:
            step = min(10.0, max(fake.now - t, 0.0))
            total += rate * step
            t += 10.0
        return int(total + rates[-1] * max(fake.now - t, 0.0))

    return read, rates


def test_intervals_are_random_clamped_and_average_near_the_mean() -> None:
    schedule = ScheduleConfig(
        mean_interval_seconds=3600, min_interval_seconds=600, max_interval_seconds=3 * 3600
    )
    rng = random.Random(4)
    draws = [next_interval(schedule, rng) for _ in range(5000)]
    assert min(draws) == 600 and max(draws) == 3 * 3600
    assert len(set(draws)) > 1000
    assert 3000 < statistics.mean(draws) < 3900


def test_after_long_downtime_one_test_runs_soon_not_a_burst() -> None:
    schedule = ScheduleConfig(
        mean_interval_seconds=3600, min_interval_seconds=600, startup_delay_seconds=60
    )
    rng = random.Random(1)
    assert first_delay(schedule, seconds_since_last=86400, rng=rng) <= 60
    assert first_delay(schedule, seconds_since_last=None, rng=rng) <= 60
    # Restarted 10 s after a test: the next one keeps the minimum spacing.
    assert first_delay(schedule, seconds_since_last=10, rng=rng) >= 590


async def test_cross_traffic_holds_until_it_stops_and_the_hold_is_told() -> None:
    fake = FakeTime()
    # Busy (100 kB/s) for the first 20 s, quiet after.
    read, _ = counters([100_000, 100_000, 0.0], fake)
    config = GatesConfig(
        sample_duration=2, recheck_interval=5, max_hold=600, cpu_threshold_percent=None
    )
    gates = Gates(config, "eth0", read_bytes=read, sleep=fake.sleep, clock=fake.clock)  # type: ignore[arg-type]
    holds: list[tuple[str, float]] = []
    clearance = await gates.wait_until_clear(lambda gate, s: holds.append((gate, s)))
    assert clearance.cleared
    assert clearance.hold_reasons == ["cross_traffic"]
    assert clearance.held_seconds >= 20
    assert {g for g, _ in holds} == {"cross_traffic"}
    assert sum(s for _, s in holds) >= 14
    assert clearance.sample.cross_traffic_bytes_per_second == 0


async def test_hold_is_bounded_and_reports_the_gate_still_tripped() -> None:
    fake = FakeTime()
    read, _ = counters([1e6], fake)
    config = GatesConfig(sample_duration=1, recheck_interval=30, max_hold=120)
    gates = Gates(
        config, "eth0", read_bytes=read, cpu_percent=lambda: 5.0, sleep=fake.sleep, clock=fake.clock
    )  # type: ignore[arg-type]
    clearance = await gates.wait_until_clear()
    assert not clearance.cleared and clearance.gate == "cross_traffic"
    assert 120 <= fake.now < 200


async def test_cpu_gate_holds_a_busy_probe() -> None:
    fake = FakeTime()
    loads = iter([0, 80.0, 0, 75.0, 0, 10.0])
    config = GatesConfig(sample_duration=1, recheck_interval=1, cross_traffic_threshold=None)
    gates = Gates(config, None, cpu_percent=lambda: next(loads), sleep=fake.sleep, clock=fake.clock)
    clearance = await gates.wait_until_clear()
    assert clearance.cleared and clearance.hold_reasons == ["cpu"]
    assert clearance.sample.cpu_percent == 10.0
    assert clearance.sample.cross_traffic_bytes_per_second is None


def test_link_speed_and_wifi_come_from_the_sysfs_tree(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "speed").write_text("100\n")
    (tmp_path / "wlan0" / "wireless").mkdir(parents=True)
    (tmp_path / "wlan0" / "speed").write_text("-1\n")
    assert read_link("eth0", tmp_path) == Link(speed_bytes_per_second=12.5e6, wireless=False)
    assert read_link("wlan0", tmp_path) == Link(speed_bytes_per_second=None, wireless=True)
    assert read_link("wlan0", tmp_path).link_type == "wifi"


def test_invalid_reasons_for_wifi_slow_nic_and_cross_traffic() -> None:
    config = GatesConfig()
    contract = 1000e6 / 8
    gigabit = Link(speed_bytes_per_second=1000e6 / 8, wireless=False)
    assert invalid_reason(config, gigabit, contract, (0.0, 1e6)) is None
    assert invalid_reason(config, Link(None, wireless=True), contract, None) == "wifi"
    assert (
        invalid_reason(GatesConfig(require_wired=False), Link(None, True), contract, None) is None
    )
    fast_ethernet = Link(speed_bytes_per_second=100e6 / 8, wireless=False)
    assert invalid_reason(config, fast_ethernet, contract, None) == "link_slower_than_contract"
    assert invalid_reason(config, gigabit, contract, (2e6, 1e6)) == "cross_traffic"


def test_cross_traffic_during_a_test_excludes_its_own_bytes() -> None:
    # A 10 s test moving 100 MB; the interface counted 107 MB + 5 MB of someone else's.
    rate, limit = cross_traffic_during(107_000_000 + 5_000_000, 100_000_000, 10.0)
    assert rate == 500_000
    assert limit == 500_000
    assert cross_traffic_during(107_000_000, 100_000_000, 10.0)[0] == 0
    # Loopback counts each byte twice (both ends are local).
    assert cross_traffic_during(214_000_000, 100_000_000, 10.0, loopback=True)[0] == 0


def test_default_interface_is_the_default_routes(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\n"
        "eth1\t0002A8C0\t00000000\t0001\n"
        "eth0\t00000000\t0102A8C0\t0003\n"
    )
    assert default_interface(tmp_path) == "eth0"
    assert default_interface(tmp_path / "none") is None


def test_budget_month_starts_on_the_reset_day_and_is_never_overshot() -> None:
    budget = DataBudget(BudgetConfig(monthly=10_000_000_000, reset_day=15))
    assert budget.period_start(datetime(2026, 11, 28, tzinfo=UTC)) == datetime(
        2026, 11, 15, tzinfo=UTC
    )
    assert budget.period_start(datetime(2026, 1, 3, tzinfo=UTC)) == datetime(
        2025, 12, 15, tzinfo=UTC
    )
    assert budget.allows(used_bytes=4_000_000_000, test_bytes=6_000_000_000)
    assert not budget.allows(used_bytes=4_000_000_001, test_bytes=6_000_000_000)
    assert DataBudget(BudgetConfig()).allows(used_bytes=10**15, test_bytes=10**12)


def test_heap_trim_runs_on_glibc_and_is_skipped_where_the_c_library_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes
    import platform

    from netprobe.agent import main

    if platform.libc_ver()[0] == "glibc":
        assert main.trim_heap()

    class Musl:
        """A C library without malloc_trim, as on OpenWrt."""

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Musl())
    assert main.trim_heap() is False
