"""The tamper suite: an export from a real store, altered in every way a sceptical reader must
catch, checked by `netprobe report verify` with the probe's real key pinned."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from compliance_records import record, seal
from typer.testing import CliRunner

from netprobe.cli import EXIT_FAILED, EXIT_SIGNER_NOT_PINNED, app
from netprobe.compliance.evidence import ProbeKey, sign_head, verify_chain
from netprobe.store import Store

Lines = list[dict[str, Any]]


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def make_store(directory: Path, probe: str, n: int = 6) -> Path:
    store = Store(directory / "results.db")
    for hour in range(n):
        store.add(record(f"2026-03-02T{10 + hour:02d}:00", down=90.0 + hour) | {"probe_id": probe})
    store.close()
    return directory / "results.db"


def export(db: Path) -> Lines:
    result = run("results", "export", "--store", str(db))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def probe_key(db: Path) -> str:
    result = run("evidence", "key", "--store", str(db))
    assert result.exit_code == 0, result.output
    (public,) = [line.split()[-1] for line in result.stdout.splitlines() if "public key" in line]
    return public


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lines, str, Lines]:
    """(our export, our public key, another probe's export)."""
    ours = make_store(tmp_path_factory.mktemp("ours"), "probe-a")
    theirs = make_store(tmp_path_factory.mktemp("theirs"), "probe-b")
    return export(ours), probe_key(ours), export(theirs)


def verify(tmp_path: Path, lines: Lines, *options: str) -> Any:
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run("report", "verify", str(path), *options)


def _drop(*positions: int) -> Callable[[Lines, Lines], Lines]:
    return lambda lines, _: [line for i, line in enumerate(lines) if i not in positions]


def _swap(lines: Lines, _: Lines) -> Lines:
    lines = list(lines)
    lines[2], lines[3] = lines[3], lines[2]
    return lines


def _blank_seq(lines: Lines, _: Lines) -> Lines:
    return [lines[0], *({**r, "evidence": {**r["evidence"], "seq": None}} for r in lines[1:])]


def _add_evidence_field(lines: Lines, _: Lines) -> Lines:
    lines = list(lines)
    lines[3] = {**lines[3], "evidence": {**lines[3]["evidence"], "note": "checked by hand"}}
    return lines


def _edit_rate(lines: Lines, _: Lines) -> Lines:
    lines = json.loads(json.dumps(lines))
    lines[4]["download"]["bytes_per_second"] *= 2
    return lines


def _resign_under_new_key(lines: Lines, _: Lines) -> Lines:
    """Better rates, a fresh key, a fresh chain and head: internally perfect, wrong signer."""
    bodies = json.loads(
        json.dumps([{k: v for k, v in r.items() if k != "evidence"} for r in lines[1:]])
    )
    for body in bodies:
        body["download"]["bytes_per_second"] *= 1.5
    key = ProbeKey.generate()
    sealed = seal(bodies, key)
    return [sign_head(verify_chain(sealed), key), *sealed]


def _splice(lines: Lines, theirs: Lines) -> Lines:
    lines = list(lines)
    lines[3] = theirs[3]
    return lines


def _drop_head(lines: Lines, _: Lines) -> Lines:
    return lines[1:]


TAMPERING = {
    "last record removed": (_drop(6), "count is 5, the head says 6"),
    "middle record removed": (_drop(3), "out of sequence"),
    "first records removed": (_drop(1, 2), "count is 4, the head says 6"),
    "two records swapped": (_swap, "out of sequence"),
    "seq blanked": (_blank_seq, "no valid seq"),
    "evidence field added": (_add_evidence_field, "unknown evidence fields: note"),
    "rate edited": (_edit_rate, "was altered"),
    "re-signed under a new key": (_resign_under_new_key, "not a pinned key"),
    "spliced from another probe": (_splice, "signed by key"),
    "head removed": (_drop_head, "no signed head"),
}


@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_is_detected_with_the_real_key_pinned(
    tmp_path: Path, probe: tuple[Lines, str, Lines], name: str
) -> None:
    lines, public_key, theirs = probe
    tamper, message = TAMPERING[name]
    result = verify(tmp_path, tamper(lines, theirs), "--public-key", public_key)
    assert result.exit_code == EXIT_FAILED, result.output
    assert message in result.stderr


def test_the_untouched_export_passes_with_its_key_pinned(
    tmp_path: Path, probe: tuple[Lines, str, Lines]
) -> None:
    lines, public_key, _ = probe
    result = verify(tmp_path, lines, "--public-key", public_key)
    assert result.exit_code == 0, result.output
    assert "6 records verified" in result.stdout
    trust = tmp_path / "trusted-keys"
    trust.write_text(f"# the probe in the hallway\n{public_key}\n")
    assert verify(tmp_path, lines, "--trust-file", str(trust)).exit_code == 0


def test_without_a_pinned_key_verify_says_signer_not_pinned(
    tmp_path: Path, probe: tuple[Lines, str, Lines]
) -> None:
    lines, _, theirs = probe
    for intact in (lines, _resign_under_new_key(lines, theirs)):
        result = verify(tmp_path, intact)
        assert result.exit_code == EXIT_SIGNER_NOT_PINNED
        assert "signer not pinned" in result.stderr
