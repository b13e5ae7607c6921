"""docs/architecture.md's module map names every module of the three rooms, and no more."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("errors", "daemon", "storage", "trainer")


def _defines_something(path: Path) -> bool:
    """A package's ``__init__.py`` counts as a module when it defines a class or function
    (``errors/``'s does); one that only documents or re-exports does not."""
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.ClassDef | ast.FunctionDef) for node in tree.body)


def _modules() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for room in ROOMS
        for path in (ROOT / room).rglob("*.py")
        if path.name != "__init__.py" or _defines_something(path)
    }


def _mapped() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`((?:errors|daemon|storage|trainer)/[\w/]+\.py)`", section))


def test_every_module_is_in_the_map() -> None:
    missing = sorted(_modules() - _mapped())
    assert not missing, f"add these to docs/architecture.md's module map: {missing}"


def test_the_map_names_no_module_that_is_gone() -> None:
    gone = sorted(_mapped() - _modules())
    assert not gone, f"docs/architecture.md's module map names modules that do not exist: {gone}"
