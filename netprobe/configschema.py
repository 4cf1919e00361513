"""Strict typed configuration: YAML mappings into dataclasses, errors that name file and key.

Each section of the configuration is a dataclass owned by the module that uses it (drives,
push, compliance...); `build()` turns a YAML mapping into one, refusing unknown keys, missing
required keys and wrong types with a `ConfigError` that names the file, the dotted key and what
was expected:

    @dataclass
    class Schedule:
        mean_interval_seconds: Annotated[float, DURATION, Key("mean_interval")] = 3600.0

    schedule = build(Schedule, {"mean_interval": "1h"}, file="agent.yml", key="schedule")

Units are declared with `Annotated[..., RATE]` (bytes/s from "100Mbit"), `SIZE` (bytes from
"1.5GB") and `DURATION` (seconds from "90s", "30m", "1h", "2d"). An attribute carries its unit
in its name while the YAML key stays short, and a renamed key keeps working with one
deprecation line, through `Key`:

    mean_interval_seconds: Annotated[float, DURATION, Key("mean_interval")] = 3600.0
    max_bytes: Annotated[int, SIZE, Key("max_bytes", old="budget")] = 256 * 1024 * 1024

Files are read with `read_yaml_file`, which bounds what a hostile or broken file can cost: at
most `MAX_CONFIG_BYTES` of text and `MAX_YAML_NODES` nodes once aliases are expanded (a
"billion laughs" file of a few hundred bytes would otherwise expand to gigabytes).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import reprlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from netprobe.errors import ConfigError
from netprobe.units import UnitError, parse_rate, parse_size

T = TypeVar("T")

log = logging.getLogger("netprobe.config")

RATE = "rate"
SIZE = "size"
DURATION = "duration"

MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_NODES = 100_000  # a large configuration has a few hundred

# a value quoted in an error: enough to recognise it, never the whole of a huge one
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 2

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def read_yaml_file(path: Path) -> Any:
    """The YAML document in `path`, bounded in size and alias expansion, or one-line ConfigError."""
    file = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or type(exc).__name__}", file=file) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"larger than {MAX_CONFIG_BYTES // 1024} KiB, not a configuration", file=file
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=file) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node) > MAX_YAML_NODES:
            raise ConfigError(
                f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded "
                "(nested aliases?)",
                file=file,
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}{_SHORT.repr(problem)[1:-1]}", file=file) from None
    finally:
        loader.dispose()


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded, counted up to just past the bound."""
    count, pending = 0, [root]
    while pending and count <= MAX_YAML_NODES:
        node = pending.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending.extend((key, value))
    return count


def parse_duration(text: str | int | float) -> float:
    """Seconds in "90s", "30m", "1.5h", "2d" or a plain number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise UnitError(f"must not be negative: {text!r}")
        return float(text)
    match = _DURATION_RE.match(str(text))
    if not match:
        raise UnitError(f"not a duration: {text!r} (expected e.g. 90s, 30m, 1h, 2d)")
    return float(match[1]) * _DURATION_SECONDS[match[2]]


@dataclass(frozen=True)
class Key:
    """The YAML key of a field named otherwise, and an older key still accepted (deprecated)."""

    name: str
    old: str | None = None


def _key(hint: Any, name: str) -> Key:
    if get_origin(hint) is typing.Annotated:
        for extra in get_args(hint)[1:]:
            if isinstance(extra, Key):
                return extra
    return Key(name)


_CONVERTERS = {RATE: parse_rate, SIZE: parse_size, DURATION: parse_duration}
_EXPECTED = {
    RATE: "a rate such as 100Mbit",
    SIZE: "a size such as 1.5GB",
    DURATION: "a duration such as 30m",
}


def build(cls: type[T], data: Any, *, file: str, key: str = "") -> T:
    """A `cls` dataclass from a YAML value; ConfigError naming file and key when it does not fit."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {_kind(data)}", file=file, key=key or None)
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    keys = {name: _key(hints[name], name) for name in fields}
    accepted = {k.name for k in keys.values()} | {k.old for k in keys.values() if k.old}
    unknown = sorted(set(map(str, data)) - accepted)
    if unknown:
        raise ConfigError(
            f"unknown key (expected one of: {', '.join(sorted(k.name for k in keys.values()))})",
            file=file,
            key=_join(key, unknown[0]),
        )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        yaml_key = keys[name]
        if yaml_key.old is not None and yaml_key.old in data:
            if yaml_key.name in data:
                raise ConfigError(
                    f"give {yaml_key.name} only ({yaml_key.old} is its old name)",
                    file=file,
                    key=_join(key, yaml_key.old),
                )
            log.warning(
                "%s: %s is deprecated, call it %s",
                file,
                _join(key, yaml_key.old),
                yaml_key.name,
            )
            data = {**data, yaml_key.name: data[yaml_key.old]}
        if yaml_key.name in data:
            values[name] = _convert(
                hints[name], data[yaml_key.name], file, _join(key, yaml_key.name)
            )
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError("required key is missing", file=file, key=_join(key, yaml_key.name))
    try:
        return cls(**values)
    except ValueError as exc:  # a __post_init__ check
        raise ConfigError(str(exc), file=file, key=key or None) from None


def _convert(hint: Any, value: Any, file: str, key: str) -> Any:
    unit = None
    if get_origin(hint) is typing.Annotated:
        hint, *extras = get_args(hint)
        unit = next((e for e in extras if e in _CONVERTERS), None)
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = options[0] if len(options) == 1 else hint
        origin = get_origin(hint)
    if unit is not None:
        try:
            return _CONVERTERS[unit](value)
        except (UnitError, TypeError):
            raise ConfigError(
                f"expected {_EXPECTED[unit]}, got {_SHORT.repr(value)}", file=file, key=key
            ) from None
    if dataclasses.is_dataclass(hint):
        return build(hint, value, file=file, key=key)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {_kind(value)}", file=file, key=key)
        (item,) = get_args(hint)
        return [_convert(item, v, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {_kind(value)}", file=file, key=key)
        _, item = get_args(hint)
        return {str(k): _convert(item, v, file, _join(key, str(k))) for k, v in value.items()}
    if origin is typing.Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(
                f"expected one of {', '.join(map(str, choices))}, got {_SHORT.repr(value)}",
                file=file,
                key=key,
            )
        return value
    return _scalar(hint, value, file, key)


def _scalar(hint: Any, value: Any, file: str, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    elif hint is Any:
        return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(
        f"expected {expected.get(hint, hint)}, got {_kind(value)} {_SHORT.repr(value)}",
        file=file,
        key=key,
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)
