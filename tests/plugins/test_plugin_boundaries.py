"""STYLE.md's module map, enforced for plugins: they import `idp.factors` and their libraries, never
the rest of `idp` (models, login, admin, ...)."""
import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_import_only_the_factor_contract(path):
    for module in imported_modules(path):
        if module == "idp" or module.startswith("idp."):
            assert module == "idp.factors" or module.startswith("idp.factors."), f"{path}: imports {module}"
        assert module != "plugins" and not module.startswith("plugins."), f"{path}: imports {module}"
