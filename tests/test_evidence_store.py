"""The probe key and the chain in the store: a lost or broken key is refused loudly, a rotation
is a signed link, retention and periods follow chain position, and URLs carry no secrets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from compliance_records import record
from typer.testing import CliRunner

from netprobe.cli import app
from netprobe.compliance.evidence import verify_export
from netprobe.errors import StoreError
from netprobe.report.verify import read_evidence
from netprobe.results import Server, public_url
from netprobe.store import Store, moved_bytes


def add(store: Store, when: str, **fields: Any) -> dict[str, Any]:
    return store.add(record(when) | fields)


def full_export(db: Path, *options: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    result = CliRunner().invoke(app, ["results", "export", "--store", str(db), *options])
    assert result.exit_code == 0, result.output
    carried = read_evidence(result.stdout)
    return carried.records, carried.head


def test_a_fresh_store_makes_an_owner_only_key_written_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    add(store, "2026-03-02T10:00")
    key = tmp_path / "probe.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "probe"))) == [
        "probe.key"
    ]  # no temporary file left behind


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda key: key.write_bytes(b""), "is empty"),
        (lambda key: key.unlink(), "is missing"),
        (lambda key: key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnonsense\n"), "is corrupt"),
    ],
    ids=["empty", "deleted", "corrupt"],
)
def test_a_lost_or_broken_key_is_refused_never_replaced(
    tmp_path: Path, damage: Any, message: str
) -> None:
    store = Store(tmp_path / "results.db")
    stored = add(store, "2026-03-02T10:00")
    store.close()
    key = tmp_path / "probe.key"
    original = key.read_bytes()
    damage(key)
    store = Store(tmp_path / "results.db")
    pending = record("2026-03-02T11:00")
    with pytest.raises(StoreError, match=message):
        store.add(pending)
    assert not key.exists() or key.read_bytes() != original  # nothing was silently made
    assert [r["id"] for r in store.pending] == [pending["id"]]
    # The data budget still counts the bytes of the result that could not be stored.
    assert store.bytes_since("2026-03-01") == moved_bytes(stored) + moved_bytes(pending) > 0
    # Restored from backup: the kept result is stored first, in order, and the chain holds.
    key.write_bytes(original)
    add(store, "2026-03-02T12:00")
    assert [r["evidence"]["seq"] for r in store.records()] == [1, 2, 3]
    assert store.records()[1]["id"] == pending["id"]
    store.close()
    records, head = full_export(tmp_path / "results.db")
    assert verify_export(records, head, {records[0]["evidence"]["public_key"]}).count == 3


def test_a_key_of_another_chain_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    add(store, "2026-03-02T10:00")
    store.close()
    other = Store(tmp_path / "other" / "results.db")
    add(other, "2026-03-02T10:00")
    (tmp_path / "probe.key").write_bytes((tmp_path / "other" / "probe.key").read_bytes())
    with pytest.raises(StoreError, match="but the chain continues with key"):
        add(Store(tmp_path / "results.db"), "2026-03-02T11:00")


def test_key_rotation_is_a_signed_link_of_the_chain(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    add(store, "2026-03-02T10:00")
    first_key = store.signing_key().public_key_b64
    rotation = store.rotate_key("yearly")
    assert rotation["kind"] == "key_rotation"
    assert rotation["evidence"]["public_key"] == first_key  # signed by the old key
    new_key = store.signing_key().public_key_b64
    assert rotation["new_public_key"] == new_key != first_key
    after = add(store, "2026-03-02T11:00")
    assert after["evidence"]["public_key"] == new_key
    store.close()
    records, head = full_export(tmp_path / "results.db")
    # The reader pinned the first key; the chain itself hands over to the new one.
    assert verify_export(records, head, {first_key}).current_key == new_key
    result = CliRunner().invoke(app, ["evidence", "key", "--store", str(tmp_path / "results.db")])
    assert new_key in result.stdout


def test_a_rotation_cut_short_before_the_rename_is_finished_at_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "results.db")
    add(store, "2026-03-02T10:00")

    real_replace = os.replace

    def power_cut(src: Any, dst: Any) -> None:
        if Path(dst).name == "probe.key":  # the rotation's last step, after its record
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(StoreError, match="waits in"):
        store.rotate_key()
    monkeypatch.undo()
    store.db.close()
    reopened = Store(tmp_path / "results.db")
    add(reopened, "2026-03-02T11:00")
    reopened.close()
    records, head = full_export(tmp_path / "results.db")
    assert [r["kind"] for r in records] == ["line", "key_rotation", "line"]
    assert verify_export(records, head, {records[0]["evidence"]["public_key"]}).count == 3


def test_a_record_stamped_1970_mid_chain_survives_pruning_and_exports(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    for when in ("2026-03-01T10:00", "2026-03-02T10:00", "1970-01-01T00:00", "2026-03-03T10:00"):
        add(store, when)
    # Before the clock was set: older than any retention cutoff, but in the middle of the chain.
    assert store.prune("2026-02-01T00:00:00+00:00") == 0
    store.close()
    records, head = full_export(tmp_path / "results.db")
    key = {records[0]["evidence"]["public_key"]}
    assert verify_export(records, head, key).count == 4
    # A period is the stretch of chain from its first to its last record inside it.
    records, head = full_export(tmp_path / "results.db", "--since", "2026-03-02T00:00:00+00:00")
    assert [r["evidence"]["seq"] for r in records] == [2, 3, 4]
    assert verify_export(records, head, key).count == 3
    # Pruning removes a prefix; the store's own full export still verifies from its anchor.
    store = Store(tmp_path / "results.db")
    assert store.prune("2026-03-02T12:00:00+00:00") == 3
    store.close()
    records, head = full_export(tmp_path / "results.db")
    assert head is not None and head["anchor_hash"] == records[0]["evidence"]["prev_hash"]
    assert verify_export(records, head, key).first_seq == 4


def test_a_kind_filter_cannot_make_a_sealed_export(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    add(store, "2026-03-02T10:00")
    store.close()
    result = CliRunner().invoke(
        app, ["results", "export", "--store", str(tmp_path / "results.db"), "--kind", "line"]
    )
    assert result.exit_code == 2 and "unbroken piece of the chain" in result.output


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("http://alice:s3cret@198.18.0.2:8080/x", "http://198.18.0.2:8080/x"),
        ("https://example.net/t?token=s3cret&mode=fast", "https://example.net/t?token=*&mode=*"),
        ("http://[2001:db8::1]:80/?key=s3cret#frag", "http://[2001:db8::1]:80/?key=*"),
    ],
)
def test_server_urls_are_stored_without_credentials_or_query_values(
    tmp_path: Path, url: str, stored: str
) -> None:
    assert public_url(url) == stored
    store = Store(tmp_path / "results.db")
    line = record("2026-03-02T10:00") | {"server": Server(url=url).__dict__}
    line["download"] = line["download"] | {"error": f"{url} is not a netprobe server"}
    store.add(line)
    store.close()
    text = (tmp_path / "results.db").read_bytes()
    assert b"s3cret" not in text
    records, _ = full_export(tmp_path / "results.db")
    assert "s3cret" not in json.dumps(records)


def test_an_export_with_its_head_imports_into_another_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    first = add(store, "2026-03-02T10:00")
    store.close()
    export = CliRunner().invoke(app, ["results", "export", "--store", str(tmp_path / "results.db")])
    (tmp_path / "export.jsonl").write_text(export.stdout)
    result = CliRunner().invoke(
        app,
        ["results", "import", str(tmp_path / "export.jsonl"), "--store", str(tmp_path / "b.db")],
    )
    assert result.exit_code == 0, result.output
    records, _ = full_export(tmp_path / "b.db")
    assert [r["id"] for r in records] == [first["id"]]


def test_a_rotation_by_another_process_is_followed_by_the_running_writer(tmp_path: Path) -> None:
    agent = Store(tmp_path / "results.db")
    add(agent, "2026-03-02T10:00")
    first_key = agent.signing_key().public_key_b64
    command = Store(tmp_path / "results.db")  # `netprobe evidence rotate` while the agent runs
    command.rotate_key()
    command.close()
    after = add(agent, "2026-03-02T11:00")
    assert after["evidence"]["public_key"] != first_key
    agent.close()
    records, head = full_export(tmp_path / "results.db")
    assert verify_export(records, head, {first_key}).count == 3


def test_a_server_key_in_the_config_must_be_an_ed25519_public_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.yml"
    config.write_text(
        "contract: {download: 100Mbit, upload: 40Mbit}\n"
        "servers: [{url: 'http://198.18.0.2:8080', public_key: 'not-a-key'}]\n"
    )
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "public_key: expected a base64 Ed25519 public key" in result.output
