"""docs/design.md's module map lists exactly the modules of src/sessiondb, and no module binds a
name twice at its top level."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "sessiondb"
DESIGN = ROOT / "docs" / "design.md"


def documented() -> list[str]:
    """The entries of the code block under "## Layout": ``name.py`` or ``folder/``."""
    section = DESIGN.read_text(encoding="utf-8").split("\n## Layout\n", 1)[1]
    block = section.split("```", 2)[1].split("\n", 1)[1]  # past the info string ("text")
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[0].strip() == "src/sessiondb/", "the map starts with the package folder"
    return [line.split()[0] for line in lines[1:]]


def actual() -> set[str]:
    """Every module of the package; a subpackage counts once, as ``folder/``."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        found.add(f"{parts[0]}/" if len(parts) > 1 else parts[0])
    return found


def test_module_map_matches_the_modules() -> None:
    listed = documented()
    assert len(listed) == len(set(listed)), f"listed twice: {sorted(listed)}"
    modules = actual()
    missing = sorted(modules - set(listed))
    stale = sorted(set(listed) - modules)
    assert not missing, f"modules missing from the map in docs/design.md: {missing}"
    assert not stale, f"the map in docs/design.md lists modules that do not exist: {stale}"


def top_level_names(tree: ast.Module) -> Counter[str]:
    """How many times each name is bound by the module's own top-level statements
    (assignments, functions, classes; not imports, nor branches such as try/except)."""
    bound: Counter[str] = Counter()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound[node.name] += 1
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            bound.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                bound.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return bound


def test_no_module_binds_a_name_twice() -> None:
    # ruff does not flag it: a second constant of the same name silently replaces the first
    # for every function of the module (a `_PREPARED` once turned a pooler's error into a
    # lost connection)
    twice = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        names = top_level_names(ast.parse(path.read_text(encoding="utf-8")))
        if again := sorted(n for n, k in names.items() if k > 1):
            twice[str(path.relative_to(PACKAGE))] = again
    assert not twice, f"names bound twice at a module's top level: {twice}"


def test_a_name_bound_twice_is_found() -> None:
    tree = ast.parse("A = 1\nB: int = 2\ndef f(): pass\nA = 3\nclass f: pass\n")
    assert {n for n, k in top_level_names(tree).items() if k > 1} == {"A", "f"}
