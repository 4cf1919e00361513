"""Run -> events -> sinks: an agent cycle and a CLI run against a loopback `netprobe serve`
deliver the same kinds of events, ending with the result, to every sink wired to them."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from netprobe import console
from netprobe.agent.metrics import AgentStatus, LineMetrics
from netprobe.agent.run import Cycle
from netprobe.agent.sinks import StoreSink
from netprobe.cli import app
from netprobe.config import AgentConfig
from netprobe.configschema import build
from netprobe.events import Event, Fanout, JsonSink, Recorder
from netprobe.measure.line import backend_for, measure_line
from netprobe.store import Store

# What every line run emits, in this order per direction, and last of all.
EVERY_RUN = {"started", "sample", "finished", "result"}


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def agent_config(url: str, store: Path) -> AgentConfig:
    return build(
        AgentConfig,
        {
            "contract": {"download": "100Mbit", "upload": "40Mbit"},
            "servers": [{"url": url}],
            "measurement": {
                "directions": ["download"],
                "duration": "1s",
                "time_limit": "20s",
                "max_bytes": "100GB",
            },
            "gates": {
                "cross_traffic_threshold": None,
                "cpu_threshold_percent": None,
                "sample_duration": "0.1s",
                "require_wired": False,
            },
            "store": {"path": str(store)},
        },
        file="agent.yml",
    )


def test_an_agent_cycle_feeds_store_metrics_and_any_sink(
    loopback_server: str, tmp_path: Path
) -> None:
    config = agent_config(loopback_server, tmp_path / "results.db")
    store = Store(tmp_path / "results.db")
    status, metrics, recorder = AgentStatus(), LineMetrics(), Recorder()
    sinks = Fanout([StoreSink(store, status), metrics, recorder])
    cycle = Cycle(config, store, status, sinks, interface=None)
    result = asyncio.run(cycle.run(config.servers[0]))
    assert result is not None and result.download is not None and result.download.ok
    seen = kinds(recorder.events)
    assert set(seen) >= EVERY_RUN and seen[-1] == "result" and seen.count("result") == 1
    # The store sealed the record before the sinks after it saw it.
    (stored,) = store.records()
    assert stored["id"] == result.id and recorder.events[-1].detail == stored
    assert "evidence" in recorder.events[-1].detail
    assert status.store_errors == 0
    scrape = {m.name: m for m in metrics.collect()}
    assert any(s.value > 0 for m in scrape.values() for s in m.samples), scrape
    store.close()


def test_a_cli_run_feeds_progress_and_json_sinks_the_same_kinds(
    loopback_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    progress_events: list[Event] = []

    class RecordedProgress(console.ProgressSink):
        def emit(self, event: Event) -> None:
            progress_events.append(event)
            super().emit(event)

    monkeypatch.setattr(console, "ProgressSink", RecordedProgress)
    run = CliRunner().invoke(
        app,
        [
            "speed",
            "--server",
            loopback_server,
            "--direction",
            "down",
            "--duration",
            "1",
            "--max-bytes",
            "100GB",
        ],
    )
    assert run.exit_code == 0, run.output
    seen = kinds(progress_events)
    assert set(seen) >= EVERY_RUN and seen[-1] == "result"

    # The same run with a JSON sink beside the progress line: one line, the finished record.
    lines: list[str] = []
    recorder = Recorder()
    progress = console.ProgressSink(Console(file=io.StringIO(), force_terminal=True))
    backend = backend_for("native", loopback_server)
    options = agent_config(loopback_server, Path("unused.db")).measurement.engine_options()
    sinks = Fanout([progress, JsonSink(lines.append), recorder])
    result = asyncio.run(measure_line(backend, ["download"], options, sinks))
    again = kinds(recorder.events)
    assert set(again) >= EVERY_RUN and again[-1] == "result" and "error" not in again
    (line,) = lines
    record: dict[str, Any] = json.loads(line)
    assert record["id"] == result.id and record["download"]["ok"]
