"""ARCHITECTURE.md rule 1: engine/ never imports Django, Celery or Channels."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"
FORBIDDEN = {"django", "celery", "channels", "channels_redis", "daphne"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "module", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE))
)
def test_engine_module_imports_no_web_framework(module: Path) -> None:
    bad = _imported_roots(module) & FORBIDDEN
    assert not bad, f"{module} imports {sorted(bad)}: the engine must stay a pure library"


def test_engine_modules_open_with_a_docstring() -> None:
    """Each engine module says which concept it handles: the lessons quote them."""
    missing = [
        str(p.relative_to(ENGINE))
        for p in ENGINE.rglob("*.py")
        if p.name != "__init__.py" and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not missing, f"engine modules without a docstring: {missing}"
