"""Evidence integrity: every stored result is chained to the one before it and signed.

    key = ProbeKey.load_or_create(Path("/var/lib/netprobe/probe.key"))
    seal = seal_record(record, seq, prev_hash, key)  # {"seq", "prev_hash", "hash", "signature", ...}
    verify_chain(records)                            # raises EvidenceError naming the first bad one

`hash` is SHA-256 over the previous hash and the record's canonical JSON (sorted keys, no
spaces, the `evidence` key left out); `signature` is Ed25519 over that hash, so anyone holding
the probe's public key can check an export without the private key. `seq` lies outside the
hash, so `verify_chain` checks that it counts up by one along the chain, and it accepts base64
only in its canonical spelling: no byte of an export can change unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from netprobe.errors import NetprobeError

GENESIS = "0" * 64


class EvidenceError(NetprobeError):
    """A record whose hash or signature does not match: the evidence was altered."""

    reason = "evidence"


def canonical_json(record: dict[str, Any]) -> bytes:
    """The bytes that are hashed: the record without its evidence, keys sorted, compact."""
    body = {k: v for k, v in record.items() if k != "evidence"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_json(record)).hexdigest()


@dataclass
class ProbeKey:
    """The probe's Ed25519 signing key, kept in a file readable by the probe only."""

    private: Ed25519PrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> ProbeKey:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, Ed25519PrivateKey)
            return cls(key)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return cls(key)

    @property
    def public_key_b64(self) -> str:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()


def seal_record(record: dict[str, Any], seq: int, prev_hash: str, key: ProbeKey) -> dict[str, Any]:
    """The evidence block for a record that follows `prev_hash` as number `seq` in the chain."""
    digest = chain_hash(prev_hash, record)
    signature = base64.b64encode(key.private.sign(bytes.fromhex(digest))).decode()
    return {
        "seq": seq,
        "prev_hash": prev_hash,
        "hash": digest,
        "signature": signature,
        "public_key": key.public_key_b64,
    }


def verify_chain(records: Iterable[dict[str, Any]], public_key: str | None = None) -> int:
    """Check every record's hash, link and signature in order; return how many were checked.

    All records must be signed by one key: `public_key` (base64) when given, else the first
    record's. Raises EvidenceError naming the first record (by position, seq and id) that fails.
    """
    prev_hash: str | None = None
    prev_seq: int | None = None
    count = 0
    for count, record in enumerate(records, start=1):
        evidence = record.get("evidence")
        if not isinstance(evidence, dict):
            raise EvidenceError(
                f"record {count} (id {record.get('id', '?')}) carries no evidence block"
            )
        name = f"record {count} (seq {evidence.get('seq', '?')}, id {record.get('id', '?')})"
        public_key = public_key or str(evidence.get("public_key"))
        if evidence.get("public_key") != public_key:
            raise EvidenceError(f"{name} is signed by a different key than the chain's")
        seq = evidence.get("seq")
        if prev_hash is not None and evidence.get("prev_hash") != prev_hash:
            gap = f": seq {seq} follows seq {prev_seq}" if seq != (prev_seq or 0) + 1 else ""
            raise EvidenceError(f"{name} does not follow the record before it (chain broken{gap})")
        expected_seq = prev_seq + 1 if prev_seq is not None else 1
        if (prev_seq is not None or evidence.get("prev_hash") == GENESIS) and seq != expected_seq:
            raise EvidenceError(f"{name} is out of sequence (expected seq {expected_seq})")
        if chain_hash(str(evidence.get("prev_hash")), record) != evidence.get("hash"):
            raise EvidenceError(f"{name} was altered: its hash does not match its content")
        try:
            public = Ed25519PublicKey.from_public_bytes(_strict_b64(evidence["public_key"]))
            public.verify(_strict_b64(evidence["signature"]), bytes.fromhex(evidence["hash"]))
        except (InvalidSignature, KeyError, ValueError, TypeError):
            raise EvidenceError(f"{name} has a signature that does not verify") from None
        prev_hash = evidence["hash"]
        prev_seq = seq if isinstance(seq, int) else None
    return count


def _strict_b64(text: str) -> bytes:
    """Base64 that must be in its one canonical spelling, so no character can change unnoticed."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise ValueError("base64 not in canonical form")
    return raw
