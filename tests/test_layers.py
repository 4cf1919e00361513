"""The layering contract: every import in netprobe runs downwards (docs/architecture.md).

A module may import its own package and anything in a lower layer; two packages sharing a
layer stay independent of each other. Lazy imports inside functions and TYPE_CHECKING imports
count too: they are arrows a reader follows just the same. A new top-level module must be
given a layer here, so the contract keeps covering the whole package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import netprobe

# Top to bottom. A name covers the module and everything under it; the longest name wins.
LAYERS: list[list[str]] = [
    ["netprobe.__main__"],
    ["netprobe.cli"],
    ["netprobe.agent", "netprobe.fleet", "netprobe.report", "netprobe.results_import"],
    ["netprobe.config"],
    ["netprobe.push", "netprobe.serve", "netprobe.exporter", "netprobe.console"],
    ["netprobe.compliance"],
    ["netprobe.store", "netprobe.results_import"],
    ["netprobe.compliance.evidence"],  # sits beside the store, which seals every record with it
    ["netprobe.drives"],
    ["netprobe.measure"],
    [
        "netprobe.events",
        "netprobe.results",
        "netprobe.secrets",
        "netprobe.configschema",
        "netprobe.peak",
        "netprobe.clock",
        "netprobe.httpserver",
    ],
    ["netprobe.units", "netprobe.i18n"],
    ["netprobe.errors"],
    ["netprobe"],  # the package's own __init__ (its version) only
]

PACKAGE = Path(netprobe.__file__).parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, package: str, known: set[str]) -> set[str]:
    """The netprobe modules `source` imports anywhere in it; `package` anchors relative ones."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {t for t in targets if t == "netprobe" or t.startswith("netprobe.")}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {
        m: imports_of(p.read_text(encoding="utf-8"), module_name(p.parent, root), known)
        for m, p in files.items()
    }


def owner(module: str, layers: list[list[str]]) -> tuple[int, str] | None:
    """(layer index, the layer entry) covering `module`: the longest matching name."""
    matches = [
        (len(name), index, name)
        for index, names in enumerate(layers)
        for name in names
        if module == name or (module.startswith(name + ".") and name != "netprobe")
    ]
    if not matches:
        return None
    _, index, name = max(matches)
    return index, name


def violations(graph: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    """Every import that runs upwards or sideways between packages of one layer."""
    found = []
    for importer, targets in sorted(graph.items()):
        here = owner(importer, layers)
        if here is None:
            found.append(f"{importer}: not in any layer")
            continue
        for target in sorted(targets):
            there = owner(target, layers)
            if there is None or there[1] == here[1] or there[0] > here[0]:
                continue
            way = "up" if there[0] < here[0] else "sideways"
            found.append(f"{importer} -> {target} ({way})")
    return found


def test_every_import_in_netprobe_runs_downwards() -> None:
    graph = import_graph()
    assert "netprobe.config" in graph and "netprobe.agent.main" in graph
    assert violations(graph, LAYERS) == []


def test_an_upward_import_is_caught() -> None:
    """config.py importing an agent module again (the arrow this contract removed) fails."""
    graph = import_graph()
    known = set(graph)
    upward = "from netprobe.agent.scheduler import ScheduleConfig\n"
    graph["netprobe.config"] |= imports_of(upward, "netprobe", known)
    assert violations(graph, LAYERS) == [
        "netprobe.config -> netprobe.agent.scheduler (up)",
    ]


def test_lazy_sideways_and_relative_imports_are_caught() -> None:
    graph = import_graph()
    known = set(graph)
    lazy_sideways = "def f():\n    from netprobe.serve import app\n"
    graph["netprobe.push.client"] = imports_of(lazy_sideways, "netprobe.push", known)
    relative_up = "from .compliance import verdict\n"
    graph["netprobe.store"] = imports_of(relative_up, "netprobe", known)
    graph["netprobe.newthing"] = set()
    assert violations(graph, LAYERS) == [
        "netprobe.newthing: not in any layer",
        "netprobe.push.client -> netprobe.serve.app (sideways)",
        "netprobe.store -> netprobe.compliance.verdict (up)",
    ]
