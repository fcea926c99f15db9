"""A step's page from a stencil: only the per-login values filled in.

The second-factor step's challenge page is about 0.4 ms of Jinja, shown by each login that reaches
the step and again after each wrong code (half a wrong code's work beyond its statements); the
password page every login begins with, about 0.6 ms. What differs from one login's page to another's
for the same template, language, method, plugin view and choice of other methods is a handful of
values: the login's handle (in the form actions), its version, the client's name, the CSRF token and
the error. So the page is rendered once with marks in their places, kept, and each later page is
that text with the marks replaced by the values, HTML-escaped as the template's `{{ }}` escapes
them.

Kept only when that is exactly what the template does with them: a stencil is rendered twice,
once with plain marks and once with values that escaping changes (quotes, `<`, `&`), and kept
only if filling the first with the second's values gives the second byte for byte. A template
that encodes a value otherwise (`|tojson`, a URL's quoting) or computes with it renders
normally, as does a page with a flashed message waiting (read from the session) or a view too
large to be the same for two logins (a WebAuthn challenge). What two renderings cannot show (a
template comparing a value with one given text, or reading the request) the project's own
templates do not do: only those (the core's, and those of the factors this distribution
declares) have stencils (`_ours`); another package's challenge page is rendered each time.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from flask import current_app, render_template, session
from flask_babel import get_locale
from markupsafe import escape

#: The per-login values a stencil has marks for, in the order `fill` takes them.
FIELDS = ("handle", "version", "client_name", "csrf_token", "error")
# Plain marks: what escaping, URL quoting and JSON leave alone (a handle is URL-safe base64).
_PLAIN = {name: f"Zq9stencil{name.replace('_', '')}Mark" for name in FIELDS}
# The check's values: the same shapes (URL-safe for the handle, digits for the version), and
# characters escaping changes wherever a template may show any text.
_CHECK = {"handle": "Zq9-Check_Handle", "version": "987654321", "client_name": "Zq9 <Client> & \"Co's\"",
          "csrf_token": "Zq9Check.Token-_", "error": "Zq9 <b>That</b> & \"that's\" not right"}
_MARK = re.compile("|".join(re.escape(mark) for mark in _PLAIN.values()))
_NAME_OF_MARK = {mark: name for name, mark in _PLAIN.items()}
_HANDLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_VIEW = 256  # characters of a plugin's view (as JSON) worth a stencil: larger ones are per login
MAX_STENCILS = 128
MAX_SEEN = 1024

_UNFIT = ""  # a key whose template does not take its values as plain escaped text: rendered normally
_stencils: OrderedDict[tuple, str] = OrderedDict()
# Keys rendered once, normally: a stencil is made at a key's second page, so that pages whose
# view is their login's own (a push challenge's number and time) render as before, once, and
# never push the stencils that serve every login out of the cache.
_seen: OrderedDict[tuple, None] = OrderedDict()
_lock = threading.Lock()


def render(templates, per_login: dict, render_values) -> str | None:
    """The page of `templates` for this login, from its stencil; None when it must be rendered
    normally (the caller does).

    `per_login` holds FIELDS' values (a `client_name` or `error` that is empty renders otherwise:
    part of the key). `render_values(marks)` gives the template's values for those marks: each
    value of FIELDS is its mark (the CSRF token as a function returning it, as the template's
    `csrf_token()`), and everything else the same as for this login's page, which the key names:
    `per_login["key"]` (the method, its view, the other methods offered...)."""
    if "_flashes" in session or not _HANDLE.fullmatch(per_login["handle"]):
        return None
    try:
        view = json.dumps(per_login["key"], sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None
    if len(view) > MAX_VIEW:
        return None
    key = (tuple(templates) if isinstance(templates, (list, tuple)) else (templates,), str(get_locale()),
           bool(per_login["client_name"]), bool(per_login["error"]), view)
    with _lock:
        stencil = _stencils.get(key)
        if stencil is not None:
            _stencils.move_to_end(key)
        elif key not in _seen:  # (a view of this login's own, a push challenge's number, is seen once)
            _seen[key] = None
            while len(_seen) > MAX_SEEN:
                _seen.popitem(last=False)
            return None
    if stencil is None:
        stencil = _made(key[0], per_login, render_values)
        with _lock:
            _stencils[key] = stencil
            while len(_stencils) > MAX_STENCILS:
                _stencils.popitem(last=False)
    if stencil == _UNFIT:
        return None
    return fill(stencil, per_login)


def fill(stencil: str, values: dict) -> str:
    """The stencil with each mark replaced by its value, escaped as `{{ value }}` escapes it (one
    pass: a value that happened to hold a mark is not read again)."""
    escaped = {_PLAIN[name]: str(escape(values[name])) for name in FIELDS}
    return _MARK.sub(lambda found: escaped[found.group(0)], stencil)


def _made(templates, per_login: dict, render_values) -> str:
    """The stencil, or _UNFIT when the check's page is not the stencil filled with the check's values."""
    def page(marks: dict) -> str:
        return render_template(list(templates), **render_values(marks))

    plain = {name: (_PLAIN[name] if per_login[name] else "") for name in FIELDS}
    check = {name: (_CHECK[name] if per_login[name] else "") for name in FIELDS}
    try:
        stencil, checked = page(plain), page(check)
    except Exception:  # (a template that computes with a value: the real one renders normally)
        return _UNFIT
    if fill(stencil, check) != checked or not _ours(templates):
        return _UNFIT
    # The real values must not be in it: a template that took them from elsewhere (the request)
    # would show every login this one's.
    if any(str(per_login[name]) in stencil for name in ("handle", "csrf_token") if per_login[name]):
        return _UNFIT
    return stencil


@lru_cache(maxsize=64)
def _ours(templates) -> bool:
    """Whether the template these names select is one of the project's own: the core's, or a
    factor's that this distribution itself declares (its first-party plugins). The check above
    sees how a value is shown, not a template that compares it with a given text or reads the
    request, which these do not."""
    filename = current_app.jinja_env.select_template(list(templates)).filename
    if filename is None:
        return False
    path = Path(filename).resolve()
    return any(path.is_relative_to(root) for root in _own_roots())


@lru_cache(maxsize=1)
def _own_roots() -> tuple[Path, ...]:
    """The core package's folder and those of the factors its own distribution (named as the
    package, pyproject.toml) declares."""
    from importlib import import_module
    from importlib.metadata import entry_points

    from idp.factors.registry import GROUP

    core = __name__.split(".")[0]
    roots = [Path(import_module(core).__file__).resolve().parent]
    for point in entry_points(group=GROUP):
        if point.dist is not None and point.dist.name == core:
            try:
                roots.append(Path(import_module(point.module).__file__).resolve().parent)
            except Exception:  # (a plugin that cannot be imported has no template served either)
                continue
    return tuple(roots)


def clear() -> None:
    """Forget every stencil (tests; a template reloaded)."""
    with _lock:
        _stencils.clear()
        _seen.clear()
