"""Server receipts, reader side: does a record claim no more than its server saw?

    check = check_receipt(record["download"], record["started_at"], pinned={key_b64: "lab-1"})
    check.describe()      # "confirmed by server lab-1"

A receipt (made by `netprobe serve --key`, see netprobe/serve/receipt.py) is "confirmed" when
its signature verifies under a pinned server key and the record's rate is no higher than the
best rate the server saw over a window as long as the record's; "unconfirmed" when the key is
not pinned; "contradicted" when the record claims more than the server saw, or the receipt
belongs to another time or another record; "forged" when its signature does not verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from netprobe.compliance.evidence import canonical_json, check_signature, key_fingerprint

RECEIPT_TAG = "netprobe_receipt"
# What the record may claim beyond the server's own view: the client's steady window and the
# server's sampling do not line up exactly, and a download's last bytes are still in flight.
RATE_TOLERANCE = 0.15
SLACK_BYTES = 1 << 24
# How far a receipt's first byte may lie after the record's start (connect, idle pings, the
# other direction first), and before it (clock steps between the two hosts).
START_SLACK = timedelta(seconds=300)
EARLY_SLACK = timedelta(seconds=30)


def receipt_digest(body: dict[str, Any]) -> str:
    """What a receipt's signature signs: SHA-256 of its canonical JSON without the signature."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass
class ReceiptCheck:
    """The outcome of checking one direction's receipt."""

    status: str  # confirmed, unconfirmed, contradicted, forged, none
    server: str = ""
    why: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("contradicted", "forged")

    def describe(self) -> str:
        if self.status == "confirmed":
            return f"confirmed by server {self.server}"
        if self.status == "none":
            return "no server receipt"
        return f"{self.status}: {self.why}"


def best_window_rate(timeline: list[list[float]], window_seconds: float) -> float:
    """The highest rate (bytes per second) over any stretch of at least `window_seconds`."""
    best = 0.0
    j = 0
    for i, (t_i, b_i) in enumerate(timeline):
        j = max(j, i + 1)
        while j < len(timeline) and timeline[j][0] - t_i < window_seconds:
            j += 1
        if j >= len(timeline):
            break
        t_j, b_j = timeline[j]
        if t_j > t_i:
            best = max(best, (b_j - b_i) / (t_j - t_i))
    if best == 0.0 and len(timeline) > 1 and timeline[-1][0] > timeline[0][0]:
        best = (timeline[-1][1] - timeline[0][1]) / (timeline[-1][0] - timeline[0][0])
    return best


def check_receipt(result: dict[str, Any], started_at: str, pinned: dict[str, str]) -> ReceiptCheck:
    """Check a direction result's receipt against the pinned server keys (key -> name)."""
    receipt = result.get("receipt")
    if not isinstance(receipt, dict):
        return ReceiptCheck("none")
    body = {k: v for k, v in receipt.items() if k != "signature"}
    key = receipt.get("public_key")
    server = str(receipt.get("server_name") or "") or key_fingerprint(str(key))
    if not check_signature(key, receipt.get("signature"), receipt_digest(body)):
        return ReceiptCheck("forged", server, "the receipt's signature does not verify")
    if receipt.get("direction") != result.get("direction"):
        return ReceiptCheck("contradicted", server, "the receipt is for the other direction")
    try:
        first = datetime.fromisoformat(str(receipt["first_at"]))
        started = datetime.fromisoformat(started_at)
        timeline = [[float(t), float(b)] for t, b in receipt["timeline"]]
        received_bytes = float(receipt["bytes"])
    except (KeyError, TypeError, ValueError):
        return ReceiptCheck("forged", server, "the receipt is not readable")
    if not started - EARLY_SLACK <= first <= started + START_SLACK:
        return ReceiptCheck(
            "contradicted", server, "the receipt is of a test at another time than the record"
        )
    claimed = result.get("bytes_per_second")
    if isinstance(claimed, int | float):
        window = float(result.get("window_seconds") or 0.0)
        ceiling = best_window_rate(timeline, window) * (1 + RATE_TOLERANCE)
        if claimed > ceiling:
            return ReceiptCheck(
                "contradicted",
                server,
                f"the record claims {claimed * 8e-6:.1f} Mbit/s, the server saw at most "
                f"{ceiling / (1 + RATE_TOLERANCE) * 8e-6:.1f} Mbit/s",
            )
    total = result.get("total_bytes")
    if (
        isinstance(total, int | float)
        and total > received_bytes * (1 + RATE_TOLERANCE) + SLACK_BYTES
    ):
        return ReceiptCheck(
            "contradicted",
            server,
            f"the record claims {total} bytes moved, the server saw {int(received_bytes)} bytes",
        )
    name = pinned.get(str(key))
    if name is None:
        return ReceiptCheck(
            "unconfirmed", server, f"server key {key_fingerprint(str(key))} is not pinned"
        )
    return ReceiptCheck("confirmed", name or server)


def check_record_receipts(
    record: dict[str, Any], pinned: dict[str, str]
) -> dict[str, ReceiptCheck]:
    """Each direction of a line record with its receipt check."""
    return {
        direction: check_receipt(record[direction], str(record.get("started_at", "")), pinned)
        for direction in ("download", "upload")
        if isinstance(record.get(direction), dict)
    }


def check_records(
    records: Iterable[dict[str, Any]], pinned: dict[str, str]
) -> list[tuple[dict[str, Any], str, ReceiptCheck]]:
    """(record, direction, check) for every direction of every line record; a receipt that
    appears twice is contradicted the second time (it was copied)."""
    seen: set[str] = set()
    checks = []
    for record in records:
        for direction, check in check_record_receipts(record, pinned).items():
            receipt = record[direction].get("receipt") or {}
            token = f"{receipt.get('test')}/{receipt.get('direction')}/{receipt.get('signature')}"
            if check.status != "none" and token in seen:
                check = ReceiptCheck("contradicted", check.server, "the receipt is a copy")
            seen.add(token)
            checks.append((record, direction, check))
    return checks
