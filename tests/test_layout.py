"""docs/design.md's module map lists exactly the modules of src/sessiondb."""

from __future__ import annotations

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
