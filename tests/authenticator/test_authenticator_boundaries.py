"""The app imports nothing from the server: if it had to, the protocol would be under-documented."""

import ast
import sys
from pathlib import Path

from authenticator_testkit import REPO

ALLOWED_THIRD_PARTY = {"cryptography", "pyotp", "zxingcpp", "PIL", "requests"}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_authenticator_imports_only_stdlib_and_its_libraries():
    for path in (REPO / "authenticator").rglob("*.py"):
        foreign = imported_top_levels(path) - sys.stdlib_module_names - ALLOWED_THIRD_PARTY - {"authenticator"}
        assert not foreign, f"{path.relative_to(REPO)} imports {sorted(foreign)}"
