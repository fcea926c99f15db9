"""The module map of STYLE.md made real: who may import whom, and an app that runs with no plugin at all."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package (path prefix) -> module prefixes it must not import
FORBIDDEN = {
    "idp/policy": ("idp.login", "idp.admin", "idp.account", "idp.oidc", "idp_plugins", "flask.session"),
    "idp/factors": ("idp.login", "idp.admin", "idp.account", "idp.oidc", "idp_plugins"),
    "idp/security": ("idp.models", "idp.login", "idp.oidc", "idp_plugins"),
    "idp/models": ("idp.login", "idp.oidc", "idp.admin", "idp.account", "authlib", "idp_plugins"),
    "idp/account": ("idp_plugins",),
    "idp/admin": ("idp_plugins",),
    "idp/login": ("idp_plugins",),
    "idp/oidc": ("idp_plugins",),
    "idp/app.py": ("idp_plugins",),
    "plugins": ("idp.login", "idp.admin", "idp.account", "idp.oidc", "idp.models", "idp.policy", "idp.db"),
    "authenticator": ("idp", "idp_plugins", "plugins"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _files(prefix: str):
    target = ROOT / prefix
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_boundaries(prefix):
    offences = []
    for path in _files(prefix):
        for name in _imports(path):
            for forbidden in FORBIDDEN[prefix]:
                if name == forbidden or name.startswith(forbidden + "."):
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)


def test_core_never_names_a_plugin():
    for path in (ROOT / "idp").rglob("*.py"):
        text = path.read_text()
        assert "idp_plugins" not in text, f"{path.relative_to(ROOT)} names a plugin package"


def test_core_names_the_recovery_codes_factor_through_its_constant():
    """The one factor the core must know by name (codes issued with a first second factor) is
    named once, `idp.factors.registry.RECOVERY_CODES`, and found through it: a second spelling
    beside it would drift. (`State.RECOVERY_CODES` is the login step of that name.)"""
    allowed = {"idp/factors/registry.py", "idp/login/transaction.py"}
    offences = []
    for path in (ROOT / "idp").rglob("*.py"):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if isinstance(node, ast.Constant) and node.value == "recovery_codes" and where not in allowed:
                offences.append(f"{where}:{node.lineno}")
    assert not offences, "spell it RECOVERY_CODES: " + ", ".join(offences)


def test_app_runs_with_every_factor_disabled(migrated_database_url):
    from importlib.metadata import entry_points

    from idp.app import create_app

    every = [ep.name for ep in entry_points(group="idp.factors")]
    app = create_app({"server.database_url": migrated_database_url, "factors.disabled": every})
    assert app.extensions["idp.factors"].names() == []
    response = app.test_client().get("/.well-known/openid-configuration")
    assert response.status_code == 200


def test_every_browser_post_needs_a_csrf_token(migrated_database_url, caplog):
    """Forms carry no CSRF check of their own (idp/forms.py): CSRFProtect's hook is the one check,
    so every POST route except the endpoints that clients and devices call must be guarded by it."""
    from flask_wtf.csrf import CSRFProtect

    from idp.app import create_app

    app = create_app({"server.database_url": migrated_database_url})
    protect = next(ext for ext in app.extensions.values() if isinstance(ext, CSRFProtect))
    def exempt(rule, view) -> bool:  # as CSRFProtect decides: the view, or its whole blueprint
        return (f"{view.__module__}.{view.__name__}" in protect._exempt_views
                or rule.endpoint.rpartition(".")[0] in protect._exempt_blueprints)

    client = app.test_client()
    adapter = app.url_map.bind("localhost")
    checked = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if "POST" not in rule.methods or exempt(rule, view):
            continue
        path = adapter.build(rule.endpoint, {arg: "1" for arg in rule.arguments})
        caplog.clear()
        response = client.post(path, data={"anything": "x"})
        refused = [r for r in caplog.records if r.name == "flask_wtf.csrf" and "token is missing" in r.getMessage()]
        assert response.status_code == 400 and refused, (rule.rule, response.status_code)
        checked.append(rule.rule)
    assert any(path.startswith("/login/") for path in checked) and any(path.startswith("/admin/") for path in checked)


def test_an_app_on_sqlite_loads_no_postgresql_or_redis_driver(sqlite_url, tmp_path):
    """Every `idp` command builds the app; on SQLite without Redis it has no use for psycopg or redis,
    which would add 80 ms to each (a fresh interpreter: this process has loaded both already)."""
    import subprocess
    import sys

    probe = ("import sys; from idp.app import create_app; create_app(); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'redis'}))")
    env = {"PATH": "/usr/bin:/bin", "IDP_DATABASE_URL": sqlite_url, "HOME": str(tmp_path)}
    loaded = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
