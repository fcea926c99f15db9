"""STYLE.md's module map for idp/policy: it decides from models; it never imports the login
pipeline, the views, the OIDC wiring, the factor plugins or their registry."""
from __future__ import annotations

import ast
from pathlib import Path

import idp.policy

FORBIDDEN = ("idp.login", "idp.admin", "idp.account", "idp.oidc", "idp.factors", "idp_plugins", "plugins")


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_policy_imports_stay_inside_its_boundary():
    folder = Path(idp.policy.__file__).parent
    offenders = {}
    for path in sorted(folder.glob("*.py")):
        bad = sorted(name for name in imports_of(path)
                     if any(name == f or name.startswith(f + ".") for f in FORBIDDEN))
        if bad:
            offenders[path.name] = bad
    assert not offenders
