"""Evidence integrity: every stored result is chained to the one before it and signed, and an
export carries a signed head so that no record can be removed, added or moved unnoticed.

    key = ProbeKey.load(Path("/var/lib/netprobe/probe.key"))   # KeyFileError if missing/corrupt
    evidence = seal_record(record, seq, prev_hash, key)  # {"format", "seq", "prev_hash", ...}
    head = sign_head(summarize(records), key)             # count, first/last seq, last hash
    verify_export(records, head, trusted_keys={key.public_key_b64})

`hash` is SHA-256 over the canonical JSON (sorted keys, compact) of the record body together
with every evidence field but `hash` and `signature` (`format`, `seq`, `prev_hash`,
`public_key`); `signature` is Ed25519 over that hash. An evidence block with any other key is
refused, base64 is accepted only in its canonical spelling: no byte of a record can change
unnoticed. The head signs the export's extent (record count, first and last seq, the hash the
first record follows, the last hash, export time), so a truncated, thinned or reordered export
fails. A signature proves only which key made it: `verify_export` passes only when the chain
starts with a key the reader pinned (`trusted_keys`); otherwise it raises SignerNotPinned.

A key changes only through a `key_rotation` record, signed by the old key and naming the new
one: the rotation is itself a link of the chain.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from netprobe.errors import NetprobeError

GENESIS = "0" * 64
EVIDENCE_FORMAT = 2
EVIDENCE_KEYS = frozenset({"format", "seq", "prev_hash", "public_key", "hash", "signature"})
HEAD_TAG = "netprobe_export_head"
HEAD_KEYS = frozenset(
    {
        HEAD_TAG,
        "count",
        "first_seq",
        "last_seq",
        "anchor_hash",
        "last_hash",
        "exported_at",
        "public_key",
        "signature",
    }
)
KEY_ROTATION = "key_rotation"


class EvidenceError(NetprobeError):
    """A record whose hash or signature does not match: the evidence was altered."""

    reason = "evidence"


class SignerNotPinned(EvidenceError):
    """The evidence is intact but the reader pinned no key: anyone could have made it."""

    reason = "signer_not_pinned"


class KeyFileError(NetprobeError):
    """The probe key file is missing, empty or not an Ed25519 key."""

    reason = "probe_key"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact, UTF-8: the one spelling that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_body(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its evidence block."""
    return {k: v for k, v in record.items() if k != "evidence"}


def record_hash(body: dict[str, Any], covered: dict[str, Any]) -> str:
    """SHA-256 of the body and the evidence fields it is sealed with."""
    return hashlib.sha256(canonical_json({"evidence": covered, "record": body})).hexdigest()


def key_fingerprint(public_key_b64: str) -> str:
    """A short, readable name of a public key: SHA-256 of its raw bytes, 16 bytes in hex."""
    try:
        raw = _strict_b64(public_key_b64)
    except ValueError:
        raw = public_key_b64.encode()
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


@dataclass
class ProbeKey:
    """An Ed25519 signing key kept in a file readable by its owner only (probe or server).

    A missing, empty or corrupt file is an error (KeyFileError), never silently replaced: a
    new key would start a chain nobody pinned. `create` writes a new one durably.
    """

    private: Ed25519PrivateKey

    @classmethod
    def load(cls, path: Path) -> ProbeKey:
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"the key file {path} is missing") from None
        except OSError as exc:
            raise KeyFileError(f"cannot read the key file {path}: {exc.strerror}") from None
        if not pem.strip():
            raise KeyFileError(f"the key file {path} is empty (cut short by a power loss?)")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFileError(f"the key file {path} is corrupt: not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"the key file {path} holds a key that is not Ed25519")
        return cls(key)

    @classmethod
    def generate(cls) -> ProbeKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def create(cls, path: Path) -> ProbeKey:
        """A new key written durably to `path`."""
        key = cls.generate()
        key.write(path)
        return key

    def write(self, path: Path) -> None:
        """Temporary file, fsync, rename, fsync of the directory: all of the key or none."""
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_directory(path.parent)

    @property
    def public_key_b64(self) -> str:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key_b64)

    def sign_hex(self, digest: str) -> str:
        """Base64 Ed25519 signature over the bytes of a hex digest."""
        return base64.b64encode(self.private.sign(bytes.fromhex(digest))).decode()


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_signature(public_key_b64: Any, signature_b64: Any, digest: Any) -> bool:
    """Whether `signature_b64` is the key's Ed25519 signature over the hex `digest`."""
    try:
        public = Ed25519PublicKey.from_public_bytes(_strict_b64(public_key_b64))
        public.verify(_strict_b64(signature_b64), bytes.fromhex(digest))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def seal_record(body: dict[str, Any], seq: int, prev_hash: str, key: ProbeKey) -> dict[str, Any]:
    """The evidence block for a record that follows `prev_hash` as number `seq` in the chain."""
    covered = {
        "format": EVIDENCE_FORMAT,
        "seq": seq,
        "prev_hash": prev_hash,
        "public_key": key.public_key_b64,
    }
    digest = record_hash(body, covered)
    return {**covered, "hash": digest, "signature": key.sign_hex(digest)}


@dataclass
class ChainSummary:
    """The extent of a verified piece of chain: what a head must sign."""

    count: int
    first_seq: int
    last_seq: int
    anchor_hash: str  # the hash the first record follows (GENESIS at the start of the chain)
    last_hash: str
    first_key: str  # the key that signed the first record
    current_key: str  # the key in force after the last record (rotations followed)


def verify_chain(records: Iterable[dict[str, Any]]) -> ChainSummary:
    """Check every record's evidence, hash, link, seq and signature in order.

    Raises EvidenceError naming the first record (by position, seq and id) that fails.
    """
    prev: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    current_key = ""
    count = 0
    for count, record in enumerate(records, start=1):
        evidence = record.get("evidence")
        if not isinstance(evidence, dict):
            raise EvidenceError(
                f"record {count} (id {record.get('id', '?')}) carries no evidence block"
            )
        name = f"record {count} (seq {evidence.get('seq', '?')}, id {record.get('id', '?')})"
        unknown = sorted(set(evidence) - EVIDENCE_KEYS)
        if unknown:
            raise EvidenceError(f"{name} has unknown evidence fields: {', '.join(unknown)}")
        missing = sorted(EVIDENCE_KEYS - set(evidence))
        if missing:
            raise EvidenceError(f"{name} lacks evidence fields: {', '.join(missing)}")
        if evidence["format"] != EVIDENCE_FORMAT:
            raise EvidenceError(
                f"{name} has evidence format {evidence['format']!r}; "
                f"this netprobe checks format {EVIDENCE_FORMAT}"
            )
        seq = evidence["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise EvidenceError(f"{name} has no valid seq")
        if prev is not None:
            if seq != prev["seq"] + 1:
                raise EvidenceError(
                    f"{name} is out of sequence: seq {seq} follows seq {prev['seq']}"
                )
            if evidence["public_key"] != current_key:
                raise EvidenceError(
                    f"{name} is signed by key {key_fingerprint(str(evidence['public_key']))}, "
                    f"not by the chain's key {key_fingerprint(current_key)}"
                )
            if evidence["prev_hash"] != prev["hash"]:
                raise EvidenceError(f"{name} does not follow the record before it (chain broken)")
        elif seq == 1 and evidence["prev_hash"] != GENESIS:
            raise EvidenceError(f"{name} is seq 1 but does not start the chain")
        covered = {k: evidence[k] for k in ("format", "seq", "prev_hash", "public_key")}
        if record_hash(record_body(record), covered) != evidence["hash"]:
            raise EvidenceError(f"{name} was altered: its hash does not match its content")
        if not check_signature(evidence["public_key"], evidence["signature"], evidence["hash"]):
            raise EvidenceError(f"{name} has a signature that does not verify")
        current_key = str(evidence["public_key"])
        if record.get("kind") == KEY_ROTATION:
            new_key = record.get("new_public_key")
            try:
                Ed25519PublicKey.from_public_bytes(_strict_b64(new_key))
            except (ValueError, TypeError):
                raise EvidenceError(f"{name} rotates to a key that is not Ed25519") from None
            current_key = str(new_key)
        prev = evidence
        first = first or evidence
    if first is None or prev is None:
        raise EvidenceError("there are no records")
    return ChainSummary(
        count=count,
        first_seq=first["seq"],
        last_seq=prev["seq"],
        anchor_hash=first["prev_hash"],
        last_hash=prev["hash"],
        first_key=first["public_key"],
        current_key=current_key,
    )


def sign_head(
    summary: ChainSummary, key: ProbeKey, exported_at: str | None = None
) -> dict[str, Any]:
    """The signed head of an export of exactly the records `summary` describes."""
    head: dict[str, Any] = {
        HEAD_TAG: 1,
        "count": summary.count,
        "first_seq": summary.first_seq,
        "last_seq": summary.last_seq,
        "anchor_hash": summary.anchor_hash,
        "last_hash": summary.last_hash,
        "exported_at": exported_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "public_key": key.public_key_b64,
    }
    return {**head, "signature": key.sign_hex(_head_digest(head))}


def _head_digest(head: dict[str, Any]) -> str:
    return hashlib.sha256(
        canonical_json({k: v for k, v in head.items() if k != "signature"})
    ).hexdigest()


def verify_export(
    records: list[dict[str, Any]],
    head: dict[str, Any] | None,
    trusted_keys: Collection[str] | None = None,
) -> ChainSummary:
    """Check the chain, that the head's signed extent is exactly these records, and the signer.

    EvidenceError for any alteration; SignerNotPinned when everything is intact but no key the
    reader trusts started the chain (`trusted_keys` empty or None).
    """
    summary = verify_chain(records)
    if head is None:
        raise EvidenceError(
            "the export carries no signed head: removed or added records could not be noticed"
        )
    unknown = sorted(set(head) - HEAD_KEYS)
    if unknown or set(head) != HEAD_KEYS:
        raise EvidenceError("the export's head has unknown or missing fields")
    if head["public_key"] != summary.current_key:
        raise EvidenceError(
            f"the export's head is signed by key {key_fingerprint(str(head['public_key']))}, "
            f"not by the chain's key {key_fingerprint(summary.current_key)}"
        )
    if not check_signature(head["public_key"], head["signature"], _head_digest(head)):
        raise EvidenceError("the export's head has a signature that does not verify")
    for field, actual in (
        ("count", summary.count),
        ("first_seq", summary.first_seq),
        ("last_seq", summary.last_seq),
        ("anchor_hash", summary.anchor_hash),
        ("last_hash", summary.last_hash),
    ):
        if head[field] != actual:
            raise EvidenceError(
                f"the export does not match its signed head: {field} is {_short(actual)}, "
                f"the head says {_short(head[field])} (records removed, added or moved)"
            )
    if not trusted_keys:
        raise SignerNotPinned(
            f"signer not pinned: the chain is intact and signed by key "
            f"{key_fingerprint(summary.first_key)}, but no trusted key was given "
            "(--public-key or --trust-file), so anyone could have made it"
        )
    if summary.first_key not in trusted_keys:
        raise EvidenceError(
            f"the chain is signed by key {key_fingerprint(summary.first_key)}, "
            "which is not a pinned key"
        )
    return summary


def _short(value: Any) -> str:
    text = str(value)
    return text[:16] + "…" if len(text) > 20 else text


def _strict_b64(text: Any) -> bytes:
    """Base64 that must be in its one canonical spelling, so no character can change unnoticed."""
    if not isinstance(text, str):
        raise TypeError("base64 must be text")
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise ValueError("base64 not in canonical form")
    return raw
