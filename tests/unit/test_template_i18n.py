"""idp.template_i18n: templates' `_()` and `ngettext()` mean what Jinja's newstyle gettext means."""
from __future__ import annotations

import pytest
from flask_babel import force_locale


@pytest.fixture
def app(migrated_database_url):
    from idp.app import create_app

    return create_app({"server.database_url": migrated_database_url})


def render(app, source: str, **values) -> str:
    return app.jinja_env.from_string(source).render(**values)


def test_translated_escaped_and_formatted(app):
    with app.test_request_context("/"):
        assert render(app, '{{ _("Signing in to %(client)s", client=c) }}', c="<b>") == "Signing in to &lt;b&gt;"
        assert render(app, '{{ _("100%% sure") }}') == "100% sure"  # newstyle formats even without arguments
        assert render(app, '{{ ngettext("%(num)d code remains.", "%(num)d codes remain.", n) }}', n=3) \
            == "3 codes remain."
        with force_locale("fr"):  # the locale can change within a request (e-mails in the user's language)
            assert render(app, '{{ _("Sign in") }}') == "Se connecter"
        assert render(app, '{{ _("Sign in") }}') == "Sign in"


def test_not_escaped_where_the_template_does_not_autoescape(app):
    with app.test_request_context("/"):
        template = app.jinja_env.from_string('{% autoescape false %}{{ _("Signing in to %(client)s", client=c) }}'
                                             '{% endautoescape %}')
        assert template.render(c="<b>") == "Signing in to <b>"


def test_every_page_names_its_language_and_writing_direction(app):
    """<html lang dir> from the page's locale: a language added later that is written right to
    left (Arabic, Hebrew) is laid out so without touching the templates."""
    from flask import render_template

    with app.test_request_context("/"):
        assert '<html lang="en" dir="ltr">' in render_template("login/expired.html")
        with force_locale("fr"):
            assert '<html lang="fr" dir="ltr">' in render_template("login/expired.html")
        with force_locale("ar"):
            assert '<html lang="ar" dir="rtl">' in render_template("login/expired.html")


def test_every_page_starts_with_a_link_past_its_header(app):
    """The first stop of Tab (WCAG 2.4.1): a link to the page's <main>, in the page's language."""
    from flask import render_template

    with app.test_request_context("/"):
        with force_locale("fr"):
            page = render_template("login/expired.html")
    body = page.split("<body", 1)[1]
    assert body.index('class="skip-link" href="#content">Aller au contenu</a>') < body.index("<header")
    assert '<main id="content"' in page
