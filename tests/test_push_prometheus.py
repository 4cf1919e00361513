"""remote_write into a real Prometheus (`--web.enable-remote-write-receiver`) and a real
VictoriaMetrics (Debian's single-node server): every test runs against both.

The pushing agents run as separate processes whose registry holds one gauge: the wall-clock time
of each scrape, appended to a journal file the moment it is collected. Whatever the receiver
ends up holding can then be compared, value by value, with what was really scraped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lab import free_port

PROMETHEUS = shutil.which("prometheus")
VICTORIA_METRICS = shutil.which("victoria-metrics")

AGENT = r"""
import asyncio, os, sys, time
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from netprobe.push.config import PushConfig
from netprobe.push.pusher import Pusher

url, store, journal = sys.argv[1:4]
journal_fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

class ScrapeClock:
    def collect(self):
        value = time.time()
        os.write(journal_fd, f"{value!r}\n".encode())
        yield GaugeMetricFamily("netprobe_test_scrape_seconds", "Scrape time.", value=value)

registry = CollectorRegistry()
registry.register(ScrapeClock())
config = PushConfig(
    url=url, interval=0.2, min_backoff=0.1, max_backoff=0.5, timeout=2.0,
    external_labels={"site": "lab-1", "operator": "test-isp"},
)
pusher = Pusher(config, registry, store_path=store, probe_id="probe-abc")
registry.register(pusher)

async def main():
    task = asyncio.ensure_future(pusher.run())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(15, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass

asyncio.run(main())
"""


class Receiver:
    """One remote_write receiver on a loopback port; stop and start it again on the same data."""

    binary: str | None = None
    ready_path = ""
    value_tolerance = 0.0  # how far a stored float may be from the one sent

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.storage = workdir / "tsdb"
        self.log = workdir / "receiver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return self.url + "/api/v1/write"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)
        wait_for(lambda: self.get(self.ready_path) is not None, f"{self.binary} ready", 60)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=60)
        self.process = None

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.read().decode()
        except OSError:
            return None

    def raw_samples(self, selector: str) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        """Every stored sample of the last hour: (labels, [(timestamp ms, value)])."""
        query = urllib.parse.urlencode({"query": f"{selector}[1h]"})
        answer = json.loads(self.get(f"/api/v1/query?{query}") or "{}")
        assert answer.get("status") == "success", answer
        return [
            (series["metric"], [(round(float(t) * 1000), float(v)) for t, v in series["values"]])
            for series in answer["data"]["result"]
        ]

    def metric(self, name: str) -> dict[str, float]:
        """Values of one metric from the receiver's own /metrics, keyed by label text."""
        found: dict[str, float] = {}
        for line in (self.get("/metrics") or "").splitlines():
            match = re.match(rf"^{name}(\{{.*\}})? (\S+)$", line)
            if match:
                found[match[1] or ""] = float(match[2])
        return found

    def write_errors(self) -> dict[str, float]:
        """Refused writes and rejected samples, by the receiver's own counters."""
        raise NotImplementedError

    def samples_appended(self) -> float:
        raise NotImplementedError

    def write_requests(self) -> float:
        raise NotImplementedError

    def series_count(self) -> float:
        raise NotImplementedError


class Prometheus(Receiver):
    """Prometheus with `--web.enable-remote-write-receiver`."""

    binary = PROMETHEUS
    ready_path = "/-/ready"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.config = workdir / "receiver.yml"
        self.config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")

    def command(self) -> list[str]:
        assert PROMETHEUS is not None
        return [
            PROMETHEUS,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--log.level=debug",
        ]

    def write_errors(self) -> dict[str, float]:
        """Anything but 204 answered on /api/v1/write, and out-of-order or out-of-bounds appends."""
        errors = {
            labels: value
            for labels, value in self.metric("prometheus_http_requests_total").items()
            if 'handler="/api/v1/write"' in labels and 'code="204"' not in labels and value
        }
        for name in (
            "prometheus_tsdb_out_of_order_samples_total",
            "prometheus_tsdb_out_of_bound_samples_total",
        ):
            errors.update({name + labels: v for labels, v in self.metric(name).items() if v})
        return errors

    def samples_appended(self) -> float:
        return sum(self.metric("prometheus_tsdb_head_samples_appended_total").values())

    def write_requests(self) -> float:
        return sum(
            v
            for labels, v in self.metric("prometheus_http_requests_total").items()
            if 'handler="/api/v1/write"' in labels
        )

    def series_count(self) -> float:
        return sum(self.metric("prometheus_tsdb_head_series").values())


class VictoriaMetrics(Receiver):
    """Single-node VictoriaMetrics (Debian's victoria-metrics); queries see samples at once."""

    binary = VICTORIA_METRICS
    ready_path = "/health"
    # it stores about 15 significant digits: a Unix time in seconds keeps its microseconds
    value_tolerance = 1e-5

    def command(self) -> list[str]:
        assert VICTORIA_METRICS is not None
        return [
            VICTORIA_METRICS,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.storage}",
            "-retentionPeriod=1y",
            "-search.latencyOffset=0s",  # default 30 s: the newest samples would not show yet
            "-search.disableCache",
        ]

    def raw_samples(self, selector: str) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        """Every stored sample, exactly as stored (/api/v1/export), after a flush to search."""
        self.get("/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": selector})
        found = []
        for line in (self.get(f"/api/v1/export?{query}") or "").splitlines():
            series = json.loads(line)
            values = [float(value) for value in series["values"]]
            found.append((series["metric"], list(zip(series["timestamps"], values, strict=True))))
        return found

    def write_errors(self) -> dict[str, float]:
        errors = {}
        for name in (
            "vm_http_request_errors_total",
            "vm_protoparser_read_errors_total",
            "vm_protoparser_unmarshal_errors_total",
            "vm_rows_ignored_total",
        ):
            errors.update({name + labels: v for labels, v in self.metric(name).items() if v})
        return errors

    def samples_appended(self) -> float:
        return sum(
            v
            for labels, v in self.metric("vm_rows_inserted_total").items()
            if "promremotewrite" in labels
        )

    def write_requests(self) -> float:
        return sum(
            v
            for labels, v in self.metric("vm_http_requests_total").items()
            if 'path="/api/v1/write"' in labels
        )

    def series_count(self) -> float:
        return sum(self.metric("vm_new_timeseries_created_total").values())


RECEIVERS = [
    pytest.param(
        Prometheus,
        id="prometheus",
        marks=pytest.mark.skipif(
            PROMETHEUS is None, reason="prometheus is not installed (apt prometheus)"
        ),
    ),
    pytest.param(
        VictoriaMetrics,
        id="victoria-metrics",
        marks=pytest.mark.skipif(
            VICTORIA_METRICS is None,
            reason="victoria-metrics is not installed (apt victoria-metrics)",
        ),
    ),
]


def wait_for(condition: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(params=RECEIVERS)
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    server: Receiver = request.param(tmp_path)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


def start_agent(url: str, store: Path, journal: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-c", AGENT, url, str(store), str(journal)], env=env)


def queued_samples(store: Path) -> int:
    with sqlite3.connect(store) as db:
        try:
            return int(
                db.execute("SELECT COALESCE(SUM(sample_count), 0) FROM push_outbox").fetchone()[0]
            )
        except sqlite3.OperationalError:  # the agent has not created the table yet
            return -1


def scrape_values(journal: Path) -> list[float]:
    return [float(line) for line in journal.read_text().split()]


def as_scraped(received: list[float], scraped: list[float], tolerance: float) -> list[float]:
    """Each received value replaced by the scraped value it stands for (scrapes are 0.2 s apart,
    far more than any receiver's rounding); a value that matches no scrape is kept as is."""
    return [next((s for s in scraped if abs(s - value) <= tolerance), value) for value in received]


def test_samples_arrive_with_external_labels_and_scrape_timestamps(
    receiver: Receiver, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    agent = start_agent(receiver.write_url, tmp_path / "store.sqlite", journal)
    try:
        wait_for(
            lambda: (
                sum(len(s) for _, s in receiver.raw_samples("netprobe_test_scrape_seconds")) >= 5
            ),
            "five samples in the receiver",
            60,
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    [(labels, samples)] = receiver.raw_samples("netprobe_test_scrape_seconds")
    assert labels == {
        "__name__": "netprobe_test_scrape_seconds",
        "job": "netprobe",
        "instance": "probe-abc",
        "probe_id": "probe-abc",
        "site": "lab-1",
        "operator": "test-isp",
    }
    for timestamp_ms, value in samples:  # the value is the scrape's own clock reading
        assert abs(timestamp_ms / 1000 - value) < 1.0
    scraped = scrape_values(journal)
    received = as_scraped([value for _, value in samples], scraped, receiver.value_tolerance)
    assert received == scraped[: len(samples)]
    pushed = {labels["__name__"] for labels, _ in receiver.raw_samples('{probe_id="probe-abc"}')}
    assert {"netprobe_push_samples_total", "netprobe_push_queue_samples"} <= pushed
    assert receiver.write_errors() == {}


def test_outage_and_agent_restart_lose_nothing_and_keep_time_order(
    receiver: Receiver, tmp_path: Path
) -> None:
    store, journal = tmp_path / "store.sqlite", tmp_path / "journal"
    url = receiver.write_url
    first = start_agent(url, store, journal)
    second = None
    try:
        wait_for(
            lambda: (
                sum(len(s) for _, s in receiver.raw_samples("netprobe_test_scrape_seconds")) >= 3
            ),
            "first samples",
            60,
        )
        assert receiver.write_errors() == {}
        receiver.stop()
        wait_for(lambda: queued_samples(store) >= 60, "samples queued during the outage", 60)
        first.kill()  # no goodbye: like a power cut of the agent process
        first.wait(timeout=30)
        scraped_by_first = len(scrape_values(journal))
        second = start_agent(url, store, journal)
        wait_for(
            lambda: len(scrape_values(journal)) >= scraped_by_first + 10,
            "scrapes after restart",
            60,
        )
        receiver.start()
        wait_for(lambda: queued_samples(store) == 0, "the outbox to drain", 120)
    finally:
        for agent in (first, second):
            if agent is not None and agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=30)
    [(_, samples)] = receiver.raw_samples("netprobe_test_scrape_seconds")
    timestamps = [t for t, _ in samples]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == len(timestamps)
    received = as_scraped(
        [value for _, value in samples], scrape_values(journal), receiver.value_tolerance
    )
    # scrapes after the last one received were still queued when the test stopped the agent
    scraped = [value for value in scrape_values(journal) if value <= received[-1]]
    # a SIGKILL may land between a scrape and its commit to the outbox: only that one may be missing
    unsent = [value for value in scraped if value not in set(received)]
    assert unsent in ([], [scraped[scraped_by_first - 1]])
    assert received == [value for value in scraped if value not in unsent]
    assert receiver.write_errors() == {}
    log = (tmp_path / "receiver.log").read_text()
    assert not re.search(r"out of order|out of bounds|duplicate sample", log, re.IGNORECASE)
    queue = receiver.raw_samples('netprobe_push_queue_samples{probe_id="probe-abc"}')
    assert max(value for _, series in queue for _, value in series) >= 60  # the backlog was visible


AGENT_CONFIG = """
probe: {{id: agent-7, interface: lo}}
contract: {{operator: Example Telecom, download: 100Mbit, upload: 20Mbit}}
servers: [{{url: "http://127.0.0.1:9"}}]
schedule: {{mean_interval: 1h, min_interval: 1h, max_interval: 1h, startup_delay: 1h}}
exporter: {{listen: "127.0.0.1:0"}}
store: {{path: results.db}}
push:
  url: {url}
  interval: 0.5s
  external_labels: {{site: lab-2}}
"""


def test_the_agent_pushes_its_own_metrics_when_push_is_configured(
    receiver: Receiver, tmp_path: Path
) -> None:
    config = tmp_path / "agent.yml"
    config.write_text(AGENT_CONFIG.format(url=receiver.write_url))
    agent = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "agent", "--config", str(config)], cwd=tmp_path
    )
    try:
        wait_for(
            lambda: receiver.raw_samples('netprobe_build_info{probe_id="agent-7"}'),
            "the agent's metrics",
            60,
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    [(labels, _)] = receiver.raw_samples('netprobe_build_info{probe_id="agent-7"}')
    assert (
        labels["site"] == "lab-2"
        and labels["instance"] == "agent-7"
        and labels["job"] == "netprobe"
    )
    assert agent.returncode == 0
    assert receiver.write_errors() == {}
