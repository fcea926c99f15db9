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


def test_numbers_are_written_as_the_page_language_writes_them(app):
    """`| number`, `| percent`, and the count of a plural message, in a template and in Python:
    "1,234" and "12%" in English, "1 234" (narrow no-break space) and "12 %" (no-break space) in French."""
    from idp.login.steps.base import wait_message
    from idp.template_i18n import number, plural_text

    with app.test_request_context("/"):
        assert render(app, "{{ n | number }} {{ share | percent }}", n=1234, share=0.12) == "1,234 12%"
        assert render(app, '{{ ngettext("%(num)s code remains.", "%(num)s codes remain.", n) }}', n=1234) \
            == "1,234 codes remain."
        assert plural_text("%(num)s minute", "%(num)s minutes", 1500) == "1,500 minutes"
        assert wait_message(1) == "Too many attempts. Wait 1 second and try again."
        with force_locale("fr"):
            assert render(app, "{{ n | number }} {{ share | percent }}", n=1234, share=0.12) == "1\u202f234 12\u00a0%"
            assert wait_message(1234) == "Trop de tentatives. Attendez 1\u202f234 secondes et réessayez."
            # The integer chooses the form (French: 0 and 1 are singular), the words show it formatted.
            assert plural_text("%(num)s minute", "%(num)s minutes", 1) == "1 minute"
            assert render(app, '{{ ngettext("Each code works once. You have %(num)s left.", '
                               '"Each code works once. You have %(num)s left.", n) }}', n=2500).count("2\u202f500") == 1
            assert number(0.5) == "0,5"


def test_a_message_still_written_with_num_d_gets_the_integer(app):
    """A third-party plugin's template written for Flask-Babel's own ngettext (`%(num)d`) still
    renders (a formatted count would be refused by `%d`)."""
    with app.test_request_context("/"):
        assert render(app, '{{ ngettext("%(num)d apple", "%(num)d apples", n) }}', n=1234) == "1234 apples"


def test_numbers_outside_a_request_are_in_english(app):
    """The `idp` command has no request: its messages are in English, numbers included."""
    from idp.template_i18n import number, plural_text

    with app.app_context():
        assert number(1234) == "1,234"
        assert plural_text("%(num)s minute", "%(num)s minutes", 1234) == "1,234 minutes"
