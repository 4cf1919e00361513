"""Validity gates (docs/method.md §3): hold a test while the line or the probe is busy, and judge
the conditions a finished test saw.

Before a test the WAN interface's byte counters and the CPU load are sampled; while either is
above its threshold the test is held and re-checked, for a bounded time. During the test the
interface counters are read again: whatever moved beyond the test's own bytes (plus their
header overhead) is cross-traffic that makes the figure invalid. A NIC slower than the contract
and a Wi-Fi link are flagged too. Everything that touches the system is passed in, so tests
hand in fixture counters and a fixture `/sys/class/net` tree:

    gates = Gates(GatesConfig(), "eth0")
    clearance = await gates.wait_until_clear(on_hold=print)
    link = read_link("eth0", Path("/sys/class/net"))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from netprobe.config import GatesConfig

# Ethernet + IPv4 + TCP-with-timestamps headers per 1448-byte segment, plus the ACKs flowing the
# other way: the interface counts about 7 % more than the payload a test reports.
HEADER_OVERHEAD = 0.07
# During a test the overhead estimate itself is uncertain at high rates; cross-traffic below
# this share of the test's own rate is not told apart from that uncertainty.
DURING_SHARE = 0.05

ARPHRD_LOOPBACK = "772"  # /sys/class/net/IF/type of a loopback device

GATE_CROSS_TRAFFIC = "cross_traffic"
GATE_CPU = "cpu"


def interface_bytes(interface: str) -> int | None:
    """Bytes received plus sent on `interface` so far (psutil), None when it does not exist."""
    stats = psutil.net_io_counters(pernic=True).get(interface)
    return None if stats is None else int(stats.bytes_recv + stats.bytes_sent)


def default_interface(proc_root: Path = Path("/proc")) -> str | None:
    """The interface of the IPv4 default route, the usual WAN of a home probe."""
    try:
        lines = (proc_root / "net" / "route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


@dataclass
class Link:
    """What the NIC says about itself."""

    speed_bytes_per_second: float | None
    wireless: bool
    loopback: bool = False

    @property
    def link_type(self) -> str:
        return "wifi" if self.wireless else "wired"


def read_link(interface: str, sysfs_root: Path = Path("/sys/class/net")) -> Link:
    """Link speed (sysfs reports Mbit/s, -1 when unknown), Wi-Fi or not, loopback or not."""
    base = sysfs_root / interface
    try:
        mbit_per_second = int((base / "speed").read_text().strip())
    except (OSError, ValueError):
        mbit_per_second = -1
    speed = mbit_per_second * 1e6 / 8 if mbit_per_second > 0 else None
    wireless = (base / "wireless").exists() or (base / "phy80211").exists()
    try:
        loopback = (base / "type").read_text().strip() == ARPHRD_LOOPBACK
    except OSError:
        loopback = False
    return Link(speed_bytes_per_second=speed, wireless=wireless, loopback=loopback)


@dataclass
class Sample:
    """One look at the probe before a test."""

    cross_traffic_bytes_per_second: float | None
    cpu_percent: float


@dataclass
class Clearance:
    """How the wait before a test ended: cleared, or still blocked by `gate` at the bound."""

    sample: Sample
    cleared: bool
    gate: str | None = None
    held_seconds: float = 0.0
    hold_reasons: list[str] = field(default_factory=list)


class Gates:
    """Samples the WAN interface and the CPU; holds a test while either is busy."""

    def __init__(
        self,
        config: GatesConfig,
        interface: str | None,
        *,
        read_bytes: Callable[[str], int | None] = interface_bytes,
        cpu_percent: Callable[[], float] = lambda: float(psutil.cpu_percent(interval=None)),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.interface = interface
        self.read_bytes = read_bytes
        self.cpu_percent = cpu_percent
        self.sleep = sleep
        self.clock = clock

    def counter(self) -> int | None:
        return self.read_bytes(self.interface) if self.interface else None

    async def sample(self) -> Sample:
        """Traffic and CPU over `sample_duration` seconds."""
        before, start = self.counter(), self.clock()
        self.cpu_percent()  # starts psutil's measuring interval
        await self.sleep(self.config.sample_duration)
        after, elapsed = self.counter(), max(self.clock() - start, 1e-3)
        cpu = self.cpu_percent()
        rate = None if before is None or after is None else max(after - before, 0) / elapsed
        return Sample(cross_traffic_bytes_per_second=rate, cpu_percent=cpu)

    def blocking(self, sample: Sample) -> str | None:
        """The gate a sample trips, if any."""
        threshold = self.config.cross_traffic_threshold
        if (
            threshold is not None
            and sample.cross_traffic_bytes_per_second is not None
            and sample.cross_traffic_bytes_per_second > threshold
        ):
            return GATE_CROSS_TRAFFIC
        cpu_limit = self.config.cpu_threshold_percent
        if cpu_limit is not None and sample.cpu_percent > cpu_limit:
            return GATE_CPU
        return None

    async def wait_until_clear(
        self, on_hold: Callable[[str, float], None] = lambda gate, seconds: None
    ) -> Clearance:
        """Sample, and while a gate trips, wait `recheck_interval` and sample again.

        `on_hold(gate, seconds)` is told about every stretch of holding as it ends, so hold
        counters move while a long hold is still going on. Gives up after `max_hold` seconds.
        """
        start = self.clock()
        sample = await self.sample()
        reasons: list[str] = []
        while (gate := self.blocking(sample)) is not None:
            if gate not in reasons:
                reasons.append(gate)
            if self.clock() - start >= self.config.max_hold:
                return Clearance(sample, False, gate, self.clock() - start, reasons)
            stretch = self.clock()
            await self.sleep(self.config.recheck_interval)
            sample = await self.sample()
            on_hold(gate, self.clock() - stretch)
        return Clearance(sample, True, None, self.clock() - start if reasons else 0.0, reasons)


def cross_traffic_during(
    interface_delta_bytes: int, test_bytes: int, seconds: float, *, loopback: bool = False
) -> tuple[float, float]:
    """Cross-traffic rate during a test and the limit it is judged against (both bytes/s).

    The test's own bytes, with their header overhead, are taken out of what the interface
    counted; the limit grows with the test's rate because the overhead estimate does. On a
    loopback interface (the offline demo) both ends are local, so each byte is counted twice.
    """
    seconds = max(seconds, 1e-3)
    test_bytes = test_bytes * 2 if loopback else test_bytes
    other = max(interface_delta_bytes - test_bytes * (1 + HEADER_OVERHEAD), 0.0)
    return other / seconds, DURING_SHARE * test_bytes / seconds


def invalid_reason(
    config: GatesConfig,
    link: Link | None,
    contracted_bytes_per_second: float,
    cross_during: tuple[float, float] | None,
) -> str | None:
    """Why a finished test does not count, or None when it does."""
    if link is not None and link.wireless and config.require_wired:
        return "wifi"
    if (
        link is not None
        and link.speed_bytes_per_second is not None
        and link.speed_bytes_per_second < contracted_bytes_per_second
    ):
        return "link_slower_than_contract"
    threshold = config.cross_traffic_threshold
    if cross_during is not None and threshold is not None:
        rate, share_limit = cross_during
        if rate > max(threshold, share_limit):
            return GATE_CROSS_TRAFFIC
    return None
