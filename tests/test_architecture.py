"""The package structure: no import cycles among ``sluice.*`` modules, no import from a lower
layer to a higher one, no private name imported across packages.

Every import counts, wherever it is written (module level, inside a function, under
``TYPE_CHECKING``): an import deferred into a function still makes the importing module depend
on the imported one, and hiding a cycle that way is what this test is for. The layers are the
ones ``docs/ARCHITECTURE.md`` draws; a package may import from its own layer and the ones below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("sluice", "sluice.errors"),
    ("sluice.wire",),
    ("sluice.flows",),
    ("sluice.io",),
    ("sluice.features", "sluice.batch"),
    ("sluice.registry", "sluice.services.catalogue", "sluice.services.catalogue_toml", "sluice.crypto"),
    ("sluice.detect",),
    ("sluice.services", "sluice.mirrors"),
    ("sluice.policy", "sluice.decisions"),
    ("sluice.decide",),
    ("sluice.gateway", "sluice.console"),
    ("sluice.cluster",),
    ("sluice.cli", "sluice.__main__", "sluice.lab", "sluice.synth"),
)
"""From the ground up. A module belongs to the longest prefix listed (``sluice.services.catalogue``
is knowledge the detectors read; the rest of ``sluice.services`` discovers services with them)."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "sluice").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` of every ``sluice`` import in one module."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "sluice" or t.startswith("sluice."):
                while t not in MODULES and "." in t:
                    t = t.rsplit(".", 1)[0]
                yield t, node.lineno


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


GRAPH = {m: dict(_imports(m, p)) for m, p in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    ground = ("sluice", "sluice.errors", "sluice.stats")
    unplaced = sorted(m for m in MODULES if _layer(m) <= 0 and m not in ground)
    assert not unplaced, f"add these packages to LAYERS (and to docs/ARCHITECTURE.md): {unplaced}"


KNOWN_UPWARD: dict[tuple[str, str], str] = {}
"""Upward imports committed by others during this refactor, owed a move; like :data:`KNOWN_CYCLES`
nothing may be added."""


def test_no_import_from_a_higher_layer() -> None:
    upward = {
        (m, t): f"{m}:{line} imports {t} (layer {_layer(m)} -> {_layer(t)})"
        for m, targets in GRAPH.items()
        for t, line in targets.items()
        if _layer(t) > _layer(m)
    }
    new = sorted(v for k, v in upward.items() if k not in KNOWN_UPWARD)
    assert not new, "\n".join(new)
    gone = sorted(f"{m} -> {t}" for m, t in KNOWN_UPWARD if (m, t) not in upward)
    assert not gone, f"fixed: take these out of KNOWN_UPWARD: {gone}"


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(GRAPH[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(GRAPH.get(w, {}))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


KNOWN_CYCLES: dict[frozenset[str], str] = {}
"""Cycles that exist and are owed a fix, each with why it is still here. Nothing may be added; an
entry must leave when its cycle is fixed (the test says so)."""


def test_no_import_cycles() -> None:
    found = {frozenset(c): c for c in _cycles()}
    new = [c for k, c in found.items() if k not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    gone = [sorted(k) for k in KNOWN_CYCLES if k not in found]
    assert not gone, f"fixed: take these out of KNOWN_CYCLES: {gone}"


def test_the_cycle_finder_finds_cycles() -> None:
    saved = dict(GRAPH)
    try:
        GRAPH.clear()
        GRAPH.update({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}})
        assert _cycles() == [["a", "b", "c"]]
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


PRIVATE_ACROSS_PACKAGES: dict[tuple[str, str], str] = {}
"""``(importing module, imported name)`` pairs allowed to cross packages although private, each
with why; like :data:`KNOWN_CYCLES` it only shrinks."""


def _private_imports() -> Iterator[str]:
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level:
                continue
            mod = node.module or ""
            if not mod.startswith("sluice"):
                continue
            if _package(mod) == _package(m):
                continue
            private_mod = any(part.startswith("_") and part != "__main__" for part in mod.split("."))
            for a in node.names:
                full = f"{mod}.{a.name}"
                if a.name.startswith("__") and a.name.endswith("__"):
                    continue  # __version__ and the like are public
                private_name = a.name.startswith("_") and full not in MODULES
                private_submodule = full in MODULES and a.name.startswith("_")
                allowed = (m, full) in PRIVATE_ACROSS_PACKAGES
                if (private_mod or private_name or private_submodule) and not allowed:
                    yield f"{m}:{node.lineno} imports {full}"


def _allowed_seen() -> Iterator[tuple[str, str]]:
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    yield m, f"{node.module}.{a.name}"


def test_no_private_name_crosses_packages() -> None:
    found = sorted(_private_imports())
    assert not found, "\n".join(found)
    seen = set(_allowed_seen())
    gone = [k for k in PRIVATE_ACROSS_PACKAGES if k not in seen]
    assert not gone, f"no longer imported, remove from PRIVATE_ACROSS_PACKAGES: {gone}"


def _bound_names(tree: ast.Module) -> set[str]:
    """Names an ``__init__`` binds at module level (imports, assignments, defs, classes)."""
    out: set[str] = set()
    body = list(tree.body)
    for node in body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports served by a module __getattr__
            body.extend(node.body)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
    return out


def test_every_package_names_what_it_offers() -> None:
    """Each package's ``__init__`` has an ``__all__``; every name in it is a submodule or bound there."""
    problems = []
    for init in sorted((SRC / "sluice").rglob("__init__.py")):
        if "__pycache__" in init.parts:
            continue
        tree = ast.parse(init.read_text(encoding="utf-8"))
        names: list[str] | None = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                names = list(ast.literal_eval(node.value))
        rel = init.parent.relative_to(SRC)
        if names is None:
            problems.append(f"{rel}: no __all__")
            continue
        bound = _bound_names(tree)
        for name in names:
            sub = init.parent / name
            is_module = sub.with_suffix(".py").exists() or (sub / "__init__.py").exists()
            if name not in bound and not is_module:
                problems.append(f"{rel}: __all__ names {name!r}, which is neither a submodule nor defined")
    assert not problems, "\n".join(problems)
