"""`netprobe report` in every format, from an export and from the store, and `report verify`."""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from compliance_records import campaign, head_for, record, seal
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from netprobe.cli import app
from netprobe.compliance.evidence import EvidenceError, ProbeKey
from netprobe.report import verify
from netprobe.report.verify import read_records, verify_file
from netprobe.store import Store

PLAN = ["--plan", "100M/40M", "--normal", "80M/32M", "--minimum", "50M/20M"]
KEY = ProbeKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
TRUSTED = {KEY.public_key_b64}


def export_lines(records: list[dict[str, Any]], key: ProbeKey = KEY) -> str:
    """What `netprobe results export --format jsonl` writes: the signed head, the records."""
    return verify.export_lines(records, head_for(records, key))


@pytest.fixture(scope="module")
def sealed() -> list[dict[str, Any]]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return seal(campaign(start, days=14, per_day=12, rng=random.Random(5)), KEY)


@pytest.fixture
def export(tmp_path: Path, sealed: list[dict[str, Any]]) -> Path:
    path = tmp_path / "results.jsonl"
    path.write_text(export_lines(sealed))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_json_report_from_an_export(export: Path, sealed: list[dict[str, Any]]) -> None:
    result = run(
        "report", "--input", str(export), *PLAN, "--timezone", "Europe/Berlin",
        "--policy", "de-bnetza", "--policy", "us-fcc", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(v["policy"], v["direction"]) for v in report["verdicts"]] == [
        ("de-bnetza", "download"),
        ("de-bnetza", "upload"),
        ("us-fcc", "download"),
        ("us-fcc", "upload"),
    ]
    assert report["timezone"] == "Europe/Berlin"
    assert report["evidence"]["verified"] is True
    assert report["evidence"]["checked"] == len(sealed)
    assert report["campaign"]["completed_campaigns"] >= 1
    assert report["contract"]["download"] == {
        "theoretical": 12.5e6,
        "normal": 10e6,
        "minimum": 6.25e6,
    }
    assert report["probe"]["ids"] == ["probe-test"]


def test_the_period_is_whole_local_days(export: Path, sealed: list[dict[str, Any]]) -> None:
    result = run(
        "report", "--input", str(export), *PLAN, "--timezone", "Europe/Berlin",
        "--from", "2026-03-03", "--to", "2026-03-04", "--format", "json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    in_period = [r for r in report["records"] if r["id"] in report["period_records"]]
    local_days = {
        datetime.fromisoformat(r["started_at"]).astimezone(_berlin()).date().isoformat()
        for r in in_period
    }
    assert local_days == {"2026-03-03", "2026-03-04"}
    assert len(in_period) == 24
    # The whole export stays embedded with its signed head, so the report still verifies.
    assert report["records"] == sealed
    assert report["evidence"]["verified"] is True


def _berlin() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")


def test_csv_report_has_one_row_per_test_and_direction(
    export: Path, sealed: list[dict[str, Any]]
) -> None:
    result = run("report", "--input", str(export), *PLAN, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = sum(isinstance(r.get(d), dict) for r in sealed for d in ("download", "upload"))
    assert len(rows) == expected
    failed = [r for r in rows if r["ok"] == "False"]
    assert failed and all(r["bytes_per_second"] == "" and r["failure_reason"] for r in failed)
    assert {r["invalid_reason"] for r in rows if r["valid"] == "False"} == {"cross_traffic"}


def test_export_and_report_write_one_csv_layout(
    tmp_path: Path, export: Path, sealed: list[dict[str, Any]]
) -> None:
    store = Store(tmp_path / "results.db")
    for kept in sealed[:6]:
        store.add({k: v for k, v in kept.items() if k != "evidence"})
    store.close()
    exported = run("results", "export", "--store", str(tmp_path / "results.db"), "--format", "csv")
    reported = run("report", "--input", str(export), *PLAN, "--format", "csv")
    assert exported.exit_code == 0 and reported.exit_code == 0, exported.output
    export_rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    report_rows = list(csv.DictReader(io.StringIO(reported.stdout)))
    assert list(export_rows[0]) == list(report_rows[0])
    assert {"started_at_utc", "server_url", "failure_reason"} <= set(export_rows[0])
    # The same test reads the same in both; only the contract share is the report's own.
    first_id = export_rows[0]["id"]
    same = next(r for r in report_rows if r["id"] == first_id)
    for column in ("started_at_utc", "server_url", "direction", "bytes_per_second", "valid"):
        assert export_rows[0][column] == same[column], column
    assert export_rows[0]["share_of_contract"] == "" and same["share_of_contract"] != ""


def test_report_needs_a_contract_and_known_options(export: Path) -> None:
    assert run("report", "--input", str(export)).exit_code == 2
    assert run("report", "--input", str(export), *PLAN, "--policy", "xx-none").exit_code == 2
    assert run("report", "--input", str(export), *PLAN, "--format", "pdf").exit_code == 2
    assert run("report", "--input", str(export), *PLAN, "--timezone", "Mars/Base").exit_code == 2


def test_report_from_the_store_named_by_the_config(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    for r in campaign(datetime(2026, 3, 2, tzinfo=UTC), days=2, per_day=12, rng=random.Random(2)):
        store.add(r)
    store.close()
    config = tmp_path / "agent.yml"
    config.write_text(
        "contract: {download: 100Mbit, upload: 40Mbit, normal: {download: 80Mbit, upload: 32Mbit}}\n"
        "servers: [{url: 'http://127.0.0.1:9/'}]\n"
        "store: {path: results.db}\n"
        "probe: {timezone: Asia/Shanghai}\n"
        "compliance: {policies: [cn-miit, eu-berec]}\n"
    )
    result = run("report", "--config", str(config), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["timezone"] == "Asia/Shanghai"
    assert [v["policy"] for v in report["verdicts"]] == ["cn-miit"] * 2 + ["eu-berec"] * 2
    assert report["evidence"]["verified"] is True
    assert report["evidence"]["checked"] == 24
    # The agent's own export verifies too.
    exported = run("results", "export", "--config", str(config))
    (tmp_path / "export.jsonl").write_text(exported.stdout)
    assert verify_file(tmp_path / "export.jsonl", {report["probe"]["public_keys"][0]}).count == 24


def test_verify_accepts_an_untouched_export(export: Path, sealed: list[dict[str, Any]]) -> None:
    result = run("report", "verify", str(export), "--public-key", KEY.public_key_b64)
    assert result.exit_code == 0, result.output
    assert f"{len(sealed)} records verified" in result.stdout
    assert KEY.fingerprint in result.stdout


def test_one_changed_byte_fails_verify_naming_the_record(
    export: Path, sealed: list[dict[str, Any]]
) -> None:
    lines = export.read_text().splitlines(keepends=True)
    target = sealed[6]
    rate = repr(target["upload"]["bytes_per_second"])
    position = lines[7].index(rate) + 2
    digit = lines[7][position]
    lines[7] = lines[7][:position] + ("1" if digit != "1" else "2") + lines[7][position + 1 :]
    export.write_text("".join(lines))
    result = run("report", "verify", str(export), "--public-key", KEY.public_key_b64)
    assert result.exit_code == 1
    assert f"record 7 (seq 7, id {target['id']}) was altered" in result.stderr


def test_a_removed_record_breaks_the_chain(export: Path, sealed: list[dict[str, Any]]) -> None:
    lines = export.read_text().splitlines(keepends=True)
    export.write_text("".join(lines[:4] + lines[5:]))
    result = run("report", "verify", str(export), "--public-key", KEY.public_key_b64)
    assert result.exit_code == 1
    assert (
        f"record 4 (seq 5, id {sealed[4]['id']}) is out of sequence: seq 5 follows seq 3"
        in result.stderr
    )


def test_a_record_signed_by_another_key_is_named(tmp_path: Path) -> None:
    other = ProbeKey.create(tmp_path / "other.key")
    records = [record("2026-03-02T10:00"), record("2026-03-02T11:00")]
    ours, theirs = seal(records, KEY), seal(records, other)
    path = tmp_path / "mixed.jsonl"
    path.write_text(verify.export_lines([ours[0], theirs[1]], head_for(ours, KEY)))
    with pytest.raises(EvidenceError, match=r"record 2 .* signed by key .*, not by the chain's"):
        verify_file(path, TRUSTED)
    path.write_text(export_lines(ours))
    with pytest.raises(EvidenceError, match=r"not a pinned key"):
        verify_file(path, {other.public_key_b64})


SMALL = seal(
    [record(f"2026-03-02T{h:02d}:00", down=90.0 + h / 7) for h in range(3)]
    + [record("2026-03-02T04:00", down="fail:timeout", up=None)],
    KEY,
)
SMALL_EXPORT = export_lines(SMALL).encode()


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(SMALL_EXPORT) - 1), byte=st.integers(0, 255))
def test_any_changed_byte_is_detected_and_located(position: int, byte: int) -> None:
    if SMALL_EXPORT[position] == byte:
        return
    changed = SMALL_EXPORT[:position] + bytes([byte]) + SMALL_EXPORT[position + 1 :]
    line = SMALL_EXPORT[:position].count(b"\n") + 1  # line 1 is the head
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as handle:
        handle.write(changed)
        handle.flush()
        try:
            verify_file(Path(handle.name), TRUSTED)
        except EvidenceError as exc:
            if line == 1:
                assert "head" in str(exc) or "record 1 " in str(exc)
            else:
                assert f"record {line - 1} " in str(exc)
            return
    # Only a change JSON cannot see (e.g. "1e5" for "1E5") may pass, and it changes nothing.
    assert read_records(changed.decode("utf-8", errors="replace")) == SMALL


def test_reports_carry_their_records_and_verify(tmp_path: Path, export: Path) -> None:
    for fmt in ("json", "html"):
        path = tmp_path / f"report.{fmt}"
        result = run(
            "report", "--input", str(export), *PLAN, "--format", fmt, "--output", str(path)
        )
        assert result.exit_code == 0, result.output
        assert run("report", "verify", str(path), "--public-key", KEY.public_key_b64).exit_code == 0
        assert KEY.fingerprint in path.read_text()
    html = (tmp_path / "report.html").read_text()
    tampered = html.replace('"probe_id":"probe-test"', '"probe_id":"probe-tost"', 1)
    (tmp_path / "report.html").write_text(tampered)
    result = run(
        "report", "verify", str(tmp_path / "report.html"), "--public-key", KEY.public_key_b64
    )
    assert result.exit_code == 1
    assert "record 1 (seq 1" in result.stderr
