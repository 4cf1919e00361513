"""Snappy block compression (the raw format remote_write requires), in pure Python.

Why not a library: `python-snappy` needs libsnappy and a compiler on armv7, `cramjam` is a
Rust extension of several megabytes; a probe sends a few kilobytes to a few hundred kilobytes a
minute, which this greedy compressor handles in milliseconds on a Raspberry Pi. It finds
repeats with a dictionary of 4-byte sequences (the label names and values of a WriteRequest
repeat for every series), so its output is a valid snappy block that any decoder accepts; it
compresses somewhat less than the C library, which matters little at a probe's volumes.

    body = compress(write_request_bytes)
"""

from __future__ import annotations

from netprobe.push.writerequest import varint

_BLOCK_BYTES = 65536  # offsets stay below 64 KiB, as in the reference encoder's fragments
_MIN_MATCH = 4
_MAX_COPY = 64


def compress(data: bytes) -> bytes:
    """`data` as one snappy block: its length as a varint, then literals and copies."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), _BLOCK_BYTES):
        _compress_block(data, start, min(start + _BLOCK_BYTES, len(data)), out)
    return bytes(out)


def _compress_block(data: bytes, start: int, end: int, out: bytearray) -> None:
    last_key: dict[bytes, int] = {}  # 4-byte sequence -> its last position in this block
    literal_from = start
    position = start
    misses = 0
    limit = end - _MIN_MATCH
    while position <= limit:
        key = data[position : position + _MIN_MATCH]
        candidate = last_key.get(key)
        last_key[key] = position
        if candidate is None:
            misses += 1
            position += 1 + (misses >> 5)  # skip faster through data that does not repeat
            continue
        length = _match_length(data, candidate, position, end)
        _literal(data, literal_from, position, out)
        _copy(position - candidate, length, out)
        position += length
        literal_from = position
        misses = 0
    _literal(data, literal_from, end, out)


def _match_length(data: bytes, earlier: int, later: int, end: int) -> int:
    length = _MIN_MATCH
    step = 32
    while later + length < end:
        # compare whole slices first: one C-level comparison per 32 bytes instead of 32 steps
        if (
            step > 1
            and data[earlier + length : earlier + length + step]
            == data[later + length : later + length + step]
        ):
            length += step
            continue
        if step > 1:
            step //= 2
            continue
        if data[earlier + length] != data[later + length]:
            break
        length += 1
    return min(length, end - later)


def _literal(data: bytes, start: int, end: int, out: bytearray) -> None:
    size = end - start
    if size <= 0:
        return
    if size <= 60:
        out.append((size - 1) << 2)
    else:
        extra = (size - 1).to_bytes(4, "little").rstrip(b"\0")
        out.append((59 + len(extra)) << 2)
        out += extra
    out += data[start:end]


def _copy(offset: int, length: int, out: bytearray) -> None:
    while length > 0:
        chunk = min(length, _MAX_COPY)
        if _MIN_MATCH <= chunk <= 11 and offset < 2048:
            out.append(((offset >> 8) << 5) | ((chunk - 4) << 2) | 1)
            out.append(offset & 0xFF)
        else:
            out.append(((chunk - 1) << 2) | 2)
            out += offset.to_bytes(2, "little")
        length -= chunk
