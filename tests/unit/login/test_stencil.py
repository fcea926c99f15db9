"""idp.login.stencil on templates of its own: kept only when filling it gives the template's page."""
from __future__ import annotations

import pytest
from flask import Flask, render_template
from flask_babel import Babel
from jinja2 import DictLoader

from idp.login import stencil

OURS = stencil._ours  # (the fixture lets any template have a stencil; one test puts this back)

PAGES = {
    "plain.html": '<p>{{ client_name }}</p><a href="/login/{{ handle }}">{{ error }}</a>'
                  '<input value="{{ csrf_token() }}"><input value="{{ version }}">',
    "json.html": '<p>{{ error }}</p><script>{{ client_name|tojson }}</script>{{ handle }}{{ version }}{{ csrf_token() }}',
    "adds.html": '{{ version + 1 }}{{ error }}{{ client_name }}{{ handle }}{{ csrf_token() }}',
}


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setattr(stencil, "_ours", _any_template)
    app = Flask(__name__)
    app.secret_key = "test"
    app.jinja_loader = DictLoader(PAGES)
    Babel(app)
    stencil.clear()
    stencil._ours.cache_clear()
    yield app
    stencil.clear()


def _page(template: str, values: dict) -> str | None:
    per_login = dict(values, key={"factor": "totp"})
    return stencil.render(template, per_login, lambda marks: {
        "handle": marks["handle"], "version": marks["version"], "client_name": marks["client_name"],
        "error": marks["error"], "csrf_token": lambda: marks["csrf_token"]})


def _rendered(template: str, values: dict) -> str:
    return render_template(template, **dict(values, csrf_token=lambda: values["csrf_token"]))


def _any_template(templates) -> bool:
    return True


_any_template.cache_clear = lambda: None

LOGINS = [
    {"handle": "abc-DEF_123", "version": 3, "client_name": 'Tools <"R"> & Co\'s', "csrf_token": "tok.en-1",
     "error": "Wrong <code> & 'so'"},
    {"handle": "zzz", "version": 12, "client_name": "", "csrf_token": "other", "error": "Wrong"},
    {"handle": "yyy", "version": 1, "client_name": "Plain", "csrf_token": "t2", "error": "Faux"},
]


def test_a_plain_template_is_filled_byte_for_byte(app):
    with app.test_request_context():
        pages = [(_page("plain.html", values), values) for values in LOGINS * 3]  # seen, made, kept
        assert [page is None for page, _ in pages] == [True, True, False, False, False, False, False, False, False]
        for page, values in pages[2:]:
            assert page == _rendered("plain.html", values)
        assert all(stencil._stencils.values())


def test_a_key_seen_once_makes_no_stencil(app):
    """A page whose view is its login's own (a push challenge's number) renders normally, and
    keeps no stencil that would push out those every login uses."""
    with app.test_request_context():
        for number in range(5):
            assert stencil.render("plain.html", dict(LOGINS[0], key={"number": number}), lambda marks: {}) is None
        assert not stencil._stencils


@pytest.mark.parametrize("template", ["json.html", "adds.html"])
def test_a_template_that_does_more_than_show_a_value_renders_normally(app, template):
    with app.test_request_context():
        for values in (LOGINS[0], LOGINS[2]):
            assert _page(template, values) is None
        assert not any(stencil._stencils.values())


def test_only_the_projects_own_templates(app, monkeypatch):
    """A stencil stands for what the check cannot see (a template comparing a value with a given
    text, reading the request): only the project's own templates, which show their values, have one."""
    monkeypatch.setattr(stencil, "_ours", OURS)
    with app.test_request_context():
        assert _page("plain.html", LOGINS[0]) is None  # (a DictLoader's: not from the idp packages)


def test_no_stencil_for_a_handle_that_is_not_url_safe_or_with_a_flash_waiting(app):
    with app.test_request_context():
        assert _page("plain.html", dict(LOGINS[0], handle="a/b")) is None
        from flask import flash

        flash("Recovery code accepted.")
        assert _page("plain.html", LOGINS[0]) is None
