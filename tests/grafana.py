"""The Grafana dashboards in dashboards/grafana/ as the tests see them: their panels, their
PromQL targets, the vector selectors inside a query, and a query with its dashboard variables
filled in.

    for target in dashboard_targets():
        expr = substitute(target.expr, {"job": "netprobe", "instance": "127.0.0.1:9469"})
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parent.parent / "dashboards" / "grafana"

# Keywords followed by a parenthesised list of label names, not by an expression.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "atan2"}

TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<matchers>\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})
  | (?P<range>\[[^\]]*\])
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<variable>\$\{?\w+\}?)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<paren>[()])
  | (?P<other>==|!=|<=|>=|=~|!~|[-+*/%^<>,])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Selector:
    """One vector selector: `name{matchers}[range]`, and the function call it sits in."""

    name: str
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)
    range: str | None = None
    function: str = ""


@dataclass
class Target:
    """One PromQL query of one panel."""

    dashboard: str
    panel: str
    expr: str


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(GRAFANA.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows; rows themselves are left out."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_targets() -> list[Target]:
    return [
        Target(name, panel["title"], target["expr"])
        for name, dashboard in load_dashboards().items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a query, found by a small PromQL tokenizer."""
    tokens: list[tuple[str | None, str]] = []
    position = 0
    for match in TOKEN.finditer(expr):
        if match.start() != position:
            raise ValueError(f"cannot read {expr[position:]!r} in {expr!r}")
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    if position != len(expr):
        raise ValueError(f"cannot read {expr[position:]!r} in {expr!r}")
    found: list[Selector] = []
    calls: list[str] = []
    aggregation = ""
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "ident" and text in LABEL_LIST_KEYWORDS and following[1] == "(":
            i = tokens.index(("paren", ")"), i) + 1
            continue
        if kind == "ident" and following[1] in ("by", "without"):
            aggregation = text  # `sum by (labels) (...)`: the call opens after the label list
            i += 1
            continue
        if kind == "ident" and following[1] == "(":
            calls.append(text)
            i += 2
            continue
        if kind == "paren":
            if text == "(":
                calls.append(aggregation)
                aggregation = ""
            else:
                calls.pop()
            i += 1
            continue
        if (kind == "ident" and text not in KEYWORDS) or kind == "matchers":
            selector = Selector(name=text if kind == "ident" else "")
            previous = tokens[i - 1][1] if i else ""
            selector.function = calls[-1] if calls and previous == "(" else ""
            if kind == "ident" and following[0] == "matchers":
                i += 1
                following = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
            matchers_text = tokens[i][1] if tokens[i][0] == "matchers" else "{}"
            selector.matchers = {
                label: (op, value) for label, op, value in MATCHER.findall(matchers_text)
            }
            if following[0] == "range":
                selector.range = following[1][1:-1].strip()
                i += 1
            found.append(selector)
        i += 1
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    """The query with `$name` and `${name}` replaced, longest names first."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr
