"""The remote_write wire message, `prometheus.WriteRequest`, encoded by hand.

Why not the protobuf package: the message has four small types (WriteRequest, TimeSeries,
Label, Sample) and only needs encoding; forty lines of varints and length prefixes replace a
generated module and a runtime dependency that has lagged behind new Python releases on armv7.

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries  { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label       { string name = 1; string value = 2; }
    message Sample      { double value = 1; int64 timestamp = 2; }   // milliseconds

Labels go out sorted by name and each series' samples in time order, as the specification
asks; receivers reject anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

Labels = Sequence[tuple[str, str]]
Sample = tuple[int, float]  # (timestamp in milliseconds, value)

_LENGTH_DELIMITED = 2
_FIXED64 = 1
_VARINT = 0


def encode_write_request(series: Iterable[tuple[Labels, Sequence[Sample]]]) -> bytes:
    """A serialized WriteRequest holding each (labels, samples) pair as one TimeSeries."""
    out = bytearray()
    for labels, samples in series:
        _field(out, 1, _time_series(labels, samples))
    return bytes(out)


def _time_series(labels: Labels, samples: Sequence[Sample]) -> bytes:
    out = bytearray()
    for name, label_value in sorted(labels):
        label = bytearray()
        _field(label, 1, name.encode())
        _field(label, 2, label_value.encode())
        _field(out, 1, label)
    for timestamp_ms, value in samples:
        sample = bytearray()
        sample += _tag(1, _FIXED64) + struct.pack("<d", value)
        sample += _tag(2, _VARINT) + varint(timestamp_ms & 0xFFFFFFFFFFFFFFFF)
        _field(out, 2, sample)
    return bytes(out)


def _field(out: bytearray, number: int, payload: bytes | bytearray) -> None:
    out += _tag(number, _LENGTH_DELIMITED)
    out += varint(len(payload))
    out += payload


def _tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def varint(value: int) -> bytes:
    """Base-128 little-endian varint (protobuf's, and snappy's length preamble)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
