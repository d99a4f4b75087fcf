"""The package layout reads as the data flow: imports point down the stages, never in a circle.

Stages, lowest first (a module may import its own subpackage and lower stages only):

    core < physics < data < model < posterior < evaluation < inference
         < plots < reports, experiments < the command lines at the top level

Peers (reports and experiments) do not import each other, nor does one command line
another. ``evaluation.metrics`` knows only InferenceData (core and posterior). The checks
read every module's imports from its AST, lazy imports inside functions included; imports
under ``if TYPE_CHECKING:`` serve annotations only, never run, and are not counted.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bayes_inr

STAGES = {"core": 0, "physics": 1, "data": 2, "model": 3, "posterior": 4, "evaluation": 5,
          "inference": 6, "plots": 7, "reports": 8, "experiments": 8}
"""Subpackage -> stage; a top-level module (a command line) is above them all."""
TOP = max(STAGES.values()) + 1
ONLY = {"evaluation.metrics": {"core", "posterior"}}
"""Module -> the only subpackages it may import besides its own."""


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root`` (name -> file), packages by their
    ``__init__``; the shipped configurations (``models``) are data, not code."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "models" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that module ``name`` (file ``path``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    annotations_only = {id(inner) for node in ast.walk(tree)
                        if isinstance(node, ast.If) and _is_type_checking(node.test)
                        for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base not in known:
                continue
            # `from package import module` imports that module; other names the base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    found.discard(name)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` tests ``TYPE_CHECKING``: its imports serve annotations only and
    never run, so they are not edges of the import graph."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def stage(name: str, package: str) -> tuple[str | None, int]:
    """(subpackage, stage) of a module; the root package itself is (None, -1): it only
    names the version and re-exports the lowest stages."""
    parts = name.split(".")
    if len(parts) == 1:
        return None, -1
    if parts[1] in STAGES:
        return parts[1], STAGES[parts[1]]
    return parts[1], TOP  # a top-level module: a command line


def violations(root: Path, package: str) -> list[str]:
    """Every import that points up or sideways, and every import circle."""
    found = modules(root, package)
    known = set(found)
    graph = {name: imports(name, path, known) for name, path in found.items()}
    wrong = []
    for name, targets in graph.items():
        own, level = stage(name, package)
        if own is None:
            continue
        for target in sorted(targets):
            other, target_level = stage(target, package)
            if other == own or other is None:
                continue
            if target_level >= level:
                wrong.append(f"{name} (stage {level}) imports {target} (stage {target_level})")
            allowed = ONLY.get(name.partition(".")[2])
            if allowed is not None and other not in allowed:
                wrong.append(f"{name} may import only {sorted(allowed)}, not {target}")
    wrong += [f"import circle: {' -> '.join(cycle)}" for cycle in circles(graph)]
    return wrong


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through every strongly connected component of more than one module
    (Tarjan's algorithm), or a module importing a package that imports it back."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [min(component)])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


ROOT = Path(bayes_inr.__file__).resolve().parents[1]


def test_every_module_imports():
    for info in pkgutil.walk_packages(bayes_inr.__path__, prefix="bayes_inr."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def test_imports_point_down_without_circles():
    assert violations(ROOT, "bayes_inr") == []


def test_every_subpackage_has_a_stage():
    subpackages = {path.parent.name for path in (ROOT / "bayes_inr").glob("*/__init__.py")}
    assert subpackages == set(STAGES)


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [tmp_path / "pkg", *(p for p in (tmp_path / "pkg").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize(("files", "says"), [
    ({"physics/radon.py": "def f():\n    from ..inference import fit\n",
      "inference/fit.py": ""}, "pkg.physics.radon (stage 1) imports pkg.inference.fit (stage 6)"),
    ({"reports/page.py": "from ..experiments import grid\n", "experiments/grid.py": ""},
     "pkg.reports.page (stage 8) imports pkg.experiments.grid (stage 8)"),
    ({"inference/a.py": "from . import b\n", "inference/b.py": "from .a import x\n"},
     "import circle: pkg.inference.a -> pkg.inference.b -> pkg.inference.a"),
    ({"inference/a.py": "from . import b\n",
      "inference/b.py": "if TYPE_CHECKING:\n    pass\nfrom .a import x\n"},
     "import circle: pkg.inference.a -> pkg.inference.b -> pkg.inference.a"),
    ({"evaluation/metrics.py": "from ..data import sample\n", "data/sample.py": ""},
     "pkg.evaluation.metrics may import only ['core', 'posterior'], not pkg.data.sample"),
    ({"fit.py": "import pkg.sweep\n", "sweep.py": ""},
     "pkg.fit (stage 9) imports pkg.sweep (stage 9)"),
])
def test_a_planted_violation_is_found(tmp_path, files, says):
    found = violations(_plant(tmp_path, files), "pkg")
    assert any(line.startswith(says) for line in found), found


def test_imports_for_annotations_only_are_no_circle(tmp_path):
    files = {"inference/a.py": "from . import b\n",
             "inference/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                               "    from .a import x\n"}
    assert violations(_plant(tmp_path, files), "pkg") == []
