"""Rates and sizes with units: parsing "200Mbit", "1.5GB", "100M" and formatting them back.

Network convention: a rate written with a bare prefix ("100M") is in bits per second, a size
written with a bare prefix ("100M") is in bytes. Decimal prefixes are powers of 1000, binary
ones ("MiB") powers of 1024. Everything inside netprobe is bytes and seconds.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import tzinfo

from netprobe.errors import UnitError

_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_NUMBER = r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*"
_SIZE_RE = re.compile(_NUMBER + r"(?P<prefix>[kmgt]i?)?(?P<unit>b|bytes?)?$", re.IGNORECASE)
_RATE_RE = re.compile(
    _NUMBER + r"(?P<prefix>[kKmMgGtT]i?)?(?P<unit>[bB][iI][tT][sS]?|[bB][yY][tT][eE][sS]?|b|B)?"
    r"(?:/s|ps)?$"
)


def _multiplier(prefix: str | None) -> int:
    prefix = (prefix or "").lower()
    return _BINARY[prefix] if prefix in _BINARY else _PREFIX[prefix]


def parse_size(text: str | int | float) -> int:
    """Bytes in a size such as "100M", "1.5GB", "512KiB" or a plain number of bytes."""
    if isinstance(text, int | float):
        return int(_non_negative(text, text))
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise UnitError(f"not a size: {text!r} (expected e.g. 100M, 1.5GB, 512KiB)")
    unit = (match["unit"] or "").lower()
    if unit == "b" and match["unit"] == "b":
        raise UnitError(f"not a size: {text!r} (lower-case b means bits; sizes are in bytes, B)")
    return int(_non_negative(float(match["num"]) * _multiplier(match["prefix"]), text))


def parse_rate(text: str | int | float) -> float:
    """Bytes per second in a rate such as "200Mbit", "100Mbps", "100M" (bits), "12.5MB/s" (bytes).

    A string without a unit or prefix ("20") is refused; a plain number is bytes per second.
    """
    if isinstance(text, int | float):
        return float(_non_negative(text, text))
    match = _RATE_RE.match(text.strip().replace(" ", ""))
    if not match:
        raise UnitError(f"not a rate: {text!r} (expected e.g. 200Mbit, 100M, 12.5MB/s)")
    unit = match["unit"] or ""
    if not unit and not match["prefix"]:
        # "20" could be bit/s, Mbit/s or MB/s: guessing turned a 20 Mbit/s plan into 20 bit/s.
        raise UnitError(f"a rate needs a unit: {text!r} (write e.g. {text.strip()}M for Mbit/s)")
    # Capital B or "byte" means bytes; "b", "bit" or a bare prefix means bits.
    in_bytes = unit == "B" or unit.lower().startswith("byte")
    value = float(match["num"]) * _multiplier(match["prefix"])
    return _non_negative(value if in_bytes else value / 8, text)


def parse_rate_pair(text: str, option: str = "--plan") -> dict[str, float]:
    """DOWN/UP rates such as "1000M/50M", as bytes per second by direction."""
    down, sep, up = text.partition("/")
    if not sep or not down.strip() or not up.strip():
        raise UnitError(f"{option} must be DOWN/UP, e.g. 1000M/50M, not {text!r}")
    try:
        return {"download": parse_rate(down), "upload": parse_rate(up)}
    except UnitError as exc:
        raise UnitError(f"{option} {text!r}: {exc}") from None


def _non_negative(value: float, text: object) -> float:
    if value < 0:
        raise UnitError(f"must not be negative: {text!r}")
    return value


def mbit(bytes_per_second: float) -> float:
    """Megabits per second (10^6 bit) from bytes per second."""
    return bytes_per_second * 8 / 1e6


def format_rate(bytes_per_second: float) -> str:
    """A human rate in bit/s with a decimal prefix, e.g. "94.3 Mbit/s"."""
    bits = bytes_per_second * 8
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.1f} {prefix}bit/s"
    return f"{bits:.0f} bit/s"


def format_size(n_bytes: float) -> str:
    """A human size with a decimal prefix, e.g. "1.2 GB"."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {prefix}B"
    return f"{n_bytes:.0f} B"


def time_zone(name: str, option: str = "timezone") -> tzinfo:
    """The IANA time zone called `name` (e.g. "Europe/Berlin"), or UnitError naming `option`."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UnitError(
            f"{option}: {name!r} is not a known time zone (e.g. Europe/Berlin)"
        ) from None
