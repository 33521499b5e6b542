"""Imports go one way: entry points -> schema -> resolvers -> workflow -> adapters ->
policies -> models -> what every layer may use.

The test parses every module of greenlight/ (nothing is imported) and fails on an import
that goes up a layer, on a cycle between packages, and on a module importing one of the
temporary re-export modules. The arrows still going up are listed, each with its reason,
in KNOWN_UPWARD: one that goes away must leave the list too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "greenlight"

# Each package or top-level module of greenlight/, by layer: a module may import from its
# own package, from a lower layer, and from another package of its own layer when no
# cycle results.
LAYERS: list[set[str]] = [
    # entry points: the commands, the ASGI app, the assembled Schema, the periodic jobs
    {"__main__", "cli", "ci", "config_commands", "app", "api", "jobs", "console"},
    {"resolvers"},  # thin: arguments in, one workflow call, the result out
    {"schema"},  # Strawberry types, inputs, enums, error codes, loaders
    {"workflow"},  # the rules: one function per action, one transaction each
    {"notifications", "rollout", "sso"},  # adapters: called by the workflow, never calling it
    {"policies", "observability", "outbox"},  # who may do what; logs, metrics, traces; outboxes
    {"models", "migrations"},  # Tortoise models and migrations
    {
        "clock",
        "errors",
        "scopes",
        "signing",
        "tx",
        "config",
        "db",
        "sqlite",
        "internals",
        "events",
        "limits",
        "build",
        "contract",
    },
]

# The imports that still go up, module to module, and why: each one is a place to fix.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def unit(module: str) -> str | None:
    """The package (or top-level module) of greenlight/ a module belongs to."""
    parts = module.split(".")
    if parts[0] != "greenlight" or len(parts) == 1:
        return None
    return parts[1]


def imports() -> set[tuple[str, str]]:
    """(importer, imported) for every import of a greenlight module by another, the
    imported name resolved to the module it names, or its package when it names a module's
    attribute."""
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    found: set[tuple[str, str]] = set()
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    for alias in node.names
                ]
            found.update((module, name) for name in names if name.startswith("greenlight"))
    return found


def rank(name: str) -> int:
    package = unit(name)
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"{name} is in no layer: add its package to LAYERS")


def upward(importer: str, imported: str) -> bool:
    return unit(importer) != unit(imported) and rank(imported) < rank(importer)


def known(importer: str, imported: str) -> bool:
    return any(
        importer == src and (imported == dst or imported.startswith(dst + ".")) for src, dst in KNOWN_UPWARD
    )


def test_imports_go_one_way():
    """Imports go one way: no module imports from a layer above its own, but for the
    arrows KNOWN_UPWARD names; and each of those still exists."""
    edges = {(a, b) for a, b in imports() if unit(b) is not None}
    wrong = sorted(f"{a} -> {b}" for a, b in edges if upward(a, b) and not known(a, b))
    assert not wrong, "imports going up a layer:\n" + "\n".join(wrong)
    gone = sorted(
        f"{src} -> {dst}"
        for src, dst in KNOWN_UPWARD
        if not any(a == src and (b == dst or b.startswith(dst + ".")) for a, b in edges)
    )
    assert not gone, "fixed, so take them out of KNOWN_UPWARD:\n" + "\n".join(gone)


def test_no_cycle_between_packages():
    """Imports go one way: the packages' graph (KNOWN_UPWARD left out) has no cycle."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in imports():
        if unit(b) is not None and unit(a) != unit(b) and not known(a, b):
            graph[unit(a)].add(unit(b))
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for following in sorted(graph[node]):
            if following in path:
                cycles.append(" -> ".join([*path[path.index(following) :], following]))
            elif following not in done:
                visit(following, [*path, following])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert not cycles, "cycles between packages:\n" + "\n".join(cycles)


def test_the_checker_sees_an_arrow_going_up():
    """The checker itself: a model importing the workflow, or the workflow importing the
    schema, is an arrow going up; the schema importing the workflow is not."""
    assert upward("greenlight.models.catalog", "greenlight.workflow.states")
    assert upward("greenlight.workflow.reads", "greenlight.schema.catalog")
    assert upward("greenlight.sso", "greenlight.workflow.identity")
    assert not upward("greenlight.schema.catalog", "greenlight.workflow.reads")
    assert not upward("greenlight.resolvers.queries", "greenlight.schema.catalog")
    assert upward("greenlight.schema.catalog", "greenlight.resolvers.queries")
    assert not upward("greenlight.workflow.reads", "greenlight.tx")
