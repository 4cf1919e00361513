"""Server receipts end to end in the lab: `netprobe serve --key` signs what it saw, the probe
stores the receipt in its record, and `report verify` and the report say which tests the server
confirmed, which it contradicts, and which are unconfirmed because its key is not pinned."""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

import pytest
from lab import NETPROBE_PORT, Lab, lab_unavailable, wait_for_port
from typer.testing import CliRunner

from netprobe.cli import EXIT_FAILED, app
from netprobe.compliance.evidence import ProbeKey
from netprobe.compliance.receipts import check_receipt, check_records
from netprobe.measure.engine import EngineOptions
from netprobe.measure.line import measure_line
from netprobe.measure.native import NativeBackend
from netprobe.store import Store

pytestmark = pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable()))


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def lab_tests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real tests against a receipt-signing server over a shaped 60/20 Mbit/s link; the
    second one's download rate doubled by the device owner before it was sealed."""
    work = tmp_path_factory.mktemp("receipts")
    options = EngineOptions(duration_seconds=2.0, time_limit_seconds=20.0, warmup_max_seconds=3.0)
    with Lab("60Mbit", "20Mbit") as lab:
        server = lab.spawn(
            sys.executable, "-m", "netprobe", "serve", "--host", lab.server_ip,
            "--port", str(NETPROBE_PORT), "--key", str(work / "server.key"), "--name", "lab-1",
        )  # fmt: skip
        wait_for_port(lab.server_ip, NETPROBE_PORT, process=server)
        with urllib.request.urlopen(f"{lab.netprobe_url}/.well-known/netprobe-key") as answer:
            published = json.load(answer)
        results = []
        for _ in range(2):
            result = await_line(NativeBackend(lab.netprobe_url), options)
            results.append(result)
    store = Store(work / "results.db")
    honest = store.add(results[0])
    edited = json.loads(json.dumps(results[1]))
    edited["download"]["bytes_per_second"] *= 2  # the owner holds the probe key: re-sealed
    store.add(edited)
    store.close()
    export = run("results", "export", "--store", str(work / "results.db"))
    (work / "export.jsonl").write_text(export.stdout)
    key = run("evidence", "key", "--store", str(work / "results.db")).stdout.split()[-1]
    return {
        "work": work,
        "published": published,
        "honest": honest,
        "probe_key": key,
        "server_key": ProbeKey.load(work / "server.key").public_key_b64,
    }


def await_line(backend: NativeBackend, options: EngineOptions) -> dict[str, Any]:
    import asyncio

    return asyncio.run(measure_line(backend, ["download", "upload"], options)).to_dict()


def test_the_server_publishes_its_key_and_signs_what_it_saw(lab_tests: dict[str, Any]) -> None:
    assert lab_tests["published"]["public_key"] == lab_tests["server_key"]
    assert lab_tests["published"]["name"] == "lab-1"
    honest = lab_tests["honest"]
    for direction in ("download", "upload"):
        receipt = honest[direction]["receipt"]
        assert receipt["direction"] == direction and receipt["server_name"] == "lab-1"
        assert receipt["streams"] >= 1 and receipt["bytes"] > 1_000_000
        assert receipt["client"].startswith("198.18.")
        seen = receipt["bytes"] / receipt["seconds"]
        # The server's own mean rate lies near the record's steady rate (a shaped link).
        assert 0.4 < seen / honest[direction]["bytes_per_second"] < 1.5
        pinned = {lab_tests["server_key"]: "lab-1"}
        assert check_receipt(honest[direction], honest["started_at"], pinned).describe() == (
            "confirmed by server lab-1"
        )


def test_verify_catches_a_rate_edited_after_the_test(lab_tests: dict[str, Any]) -> None:
    work = lab_tests["work"]
    result = run(
        "report", "verify", str(work / "export.jsonl"),
        "--public-key", lab_tests["probe_key"],
        "--server-key", f"lab-1={lab_tests['server_key']}",
    )  # fmt: skip
    assert result.exit_code == EXIT_FAILED, result.output
    assert "receipts: 3 confirmed by server lab-1, 1 contradicted" in result.stdout
    assert "seq 2 download: contradicted: the record claims" in result.stdout
    assert "a server receipt contradicts its record" in result.stderr


def test_a_receipt_from_an_unpinned_key_is_unconfirmed(lab_tests: dict[str, Any]) -> None:
    work = lab_tests["work"]
    honest_only = [
        line for line in (work / "export.jsonl").read_text().splitlines() if '"seq":2' not in line
    ]
    records = [json.loads(line) for line in honest_only[1:]]
    (check_download, check_upload) = [c for _, _, c in check_records(records, {})]
    assert check_download.status == check_upload.status == "unconfirmed"
    assert "is not pinned" in check_download.describe()


def test_the_report_marks_which_tests_the_server_confirmed(lab_tests: dict[str, Any]) -> None:
    work = lab_tests["work"]
    config = work / "agent.yml"
    config.write_text(
        "contract: {download: 60Mbit, upload: 20Mbit}\n"
        "servers: [{url: 'http://198.18.0.2:8080', name: lab-1, "
        f"public_key: '{lab_tests['server_key']}'}}]\n"
        "store: {path: results.db}\n"
    )
    report = run("report", "--config", str(config), "--format", "json")
    assert report.exit_code == 0, report.output
    statuses = {
        (r["direction"], r["status"].split(":")[0]) for r in json.loads(report.stdout)["receipts"]
    }
    assert ("download", "confirmed by server lab-1") in statuses
    assert ("download", "contradicted") in statuses
    html = run("report", "--config", str(config), "--format", "html")
    assert "confirmed by server lab-1" in html.stdout and "contradicted" in html.stdout


def test_a_forged_or_copied_receipt_is_refused(lab_tests: dict[str, Any]) -> None:
    honest = json.loads(json.dumps(lab_tests["honest"]))
    pinned = {lab_tests["server_key"]: "lab-1"}
    forged = json.loads(json.dumps(honest))
    forged["download"]["receipt"]["bytes"] *= 3
    assert check_receipt(forged["download"], forged["started_at"], pinned).status == "forged"
    copy = json.loads(json.dumps(honest)) | {"id": "another"}
    statuses = [c.status for _, _, c in check_records([honest, copy], pinned)]
    assert statuses == ["confirmed", "confirmed", "contradicted", "contradicted"]
