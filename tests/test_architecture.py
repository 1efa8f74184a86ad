"""The package's shape: imports point one way.

Every import of every module is read from its source (module level, inside
functions, and under ``if TYPE_CHECKING:`` — a deferred import is still an arrow)
and checked against the layer order below: a module may import its own package
and anything on a lower layer, never a higher one, and the leaves of layer 2
never import each other. With that there can be no import cycle either, and a
test says so directly. Ray stays in ``vrsearch/orchestrate/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vrsearch"

#: lowest first: the leaf core, the registry of method specs, the independent leaves (losses,
#: components, models, data, results), the methods, the study (it validates method params),
#: the engine, the report, Ray orchestration, the command line
LAYERS = {
    "vrsearch": 0,
    "vrsearch.errors": 0,
    "vrsearch.core": 0,
    "vrsearch.registry": 1,
    "vrsearch.losses": 2,
    "vrsearch.components": 2,
    "vrsearch.models": 2,
    "vrsearch.data": 2,
    "vrsearch.results": 2,
    "vrsearch.methods": 3,
    "vrsearch.study": 4,
    "vrsearch.engine": 5,
    "vrsearch.report": 6,
    "vrsearch.orchestrate": 7,
    "vrsearch.cli": 8,
}


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    mods = modules(root)
    top = root.name

    def known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            edges[mod] |= {known(t) for t in targets if t == top or t.startswith(top + ".")}
        edges[mod].discard(mod)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if (key := ".".join(parts[:n])) in LAYERS:
            return key, LAYERS[key]
    raise KeyError(f"{module}: no layer; add its package to LAYERS")


def upward(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            (pa, la), (pb, lb) = layer(a), layer(b)
            if lb > la or (lb == la == 2 and pa != pb):
                out.append(f"{a} (layer {la}) imports {b} (layer {lb})")
    return out


def test_no_import_cycle_and_no_upward_arrow():
    edges = imports(PACKAGE)
    assert len(edges) > 80  # the whole package was read
    assert cycles(edges) == []
    assert upward(edges) == []


def test_ray_is_imported_only_by_orchestrate():
    for mod, path in modules(PACKAGE).items():
        if layer(mod)[0] == "vrsearch.orchestrate":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            assert not any(n == "ray" or n.startswith("ray.") for n in names), f"{mod} imports ray"


@pytest.fixture
def toy(tmp_path) -> Path:
    """A package whose arrows are wrong: a cycle hidden in a function and an upward import."""
    root = tmp_path / "vrsearch"
    (root / "core").mkdir(parents=True)
    (root / "engine").mkdir()
    for folder in (root, root / "core", root / "engine"):
        (folder / "__init__.py").write_text("")
    (root / "core" / "a.py").write_text("def f():\n    from vrsearch.core import b\n")
    (root / "core" / "b.py").write_text("from . import a\n")
    (root / "core" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vrsearch.engine.run import X\n"
    )
    (root / "engine" / "run.py").write_text("from vrsearch.core.c import *\n")
    return root


def test_the_checks_see_hidden_cycles_and_upward_arrows(toy):
    edges = imports(toy)
    assert cycles(edges) == [["vrsearch.core.a", "vrsearch.core.b"], ["vrsearch.core.c", "vrsearch.engine.run"]]
    assert upward(edges) == ["vrsearch.core.c (layer 0) imports vrsearch.engine.run (layer 5)"]


def test_a_study_driver_imports_neither_torch_nor_monai_nor_the_training_engine():
    """``vrsearch run``/``resume``/``validate`` run in a process that trains nothing: the
    command line, the runner, every method's spec and the trainable it hands to Tune load
    without torch, MONAI and the engine (trials import them where they train)."""
    code = (
        "import sys, vrsearch.cli, vrsearch.orchestrate.runner, vrsearch.orchestrate.trainable, vrsearch.methods;"
        "import vrsearch.study.load, vrsearch.orchestrate.checks;"
        "assert len(vrsearch.methods.all_methods()) >= 10;"
        "print(sorted(m for m in ('torch', 'monai', 'vrsearch.engine.trainer', 'vrsearch.engine.trial') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    code = "import vrsearch.orchestrate.trainable as t, sys; t.engine_imported(); print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # a trial's process does load them
