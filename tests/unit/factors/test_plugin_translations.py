"""A third-party factor ships its own translations: `translations/` beside its class.

Its label, its messages and the `_()` of its templates are looked up in the app's one
catalogue, which knows none of them: the registry merges the plugin's catalogue into it when
it registers the factor. The core's entries win over a plugin's for the same message.
"""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from flask import render_template
from flask_babel import force_locale

from idp.factors.registry import current_registry

CORE_MESSAGE = "That code is not right. Try again."  # the core's, translated in its catalogue

FACTOR_PY = '''
from flask_babel import lazy_gettext as _l

from idp.factors import Factor, FactorKind, Rejected, Step


class MailedCodeFactor(Factor):
    name = "mailed_code"
    label = _l("Code by e-mail")
    kind = FactorKind.SECOND_FACTOR
    amr = ("otp",)

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        return Rejected("invalid_code", message=_l("We sent no code to this address."))

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={})

    def verify(self, user, state, response, ctx):
        return Rejected("invalid_code")
'''


@pytest.fixture
def plugin_package(tmp_path):
    """A plugin package as its author lays it out, importable from `tmp_path`."""
    package = tmp_path / "acme_mailed_code"
    (package / "templates" / "factors" / "mailed_code").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "factor.py").write_text(textwrap.dedent(FACTOR_PY))
    (package / "templates" / "factors" / "mailed_code" / "challenge.html").write_text(
        '{{ _("Type the code we sent to your mailbox.") }}|{{ _("That code is not right. Try again.") }}')
    catalog = Catalog(locale="fr", domain="messages")
    catalog.add("Code by e-mail", "Code par e-mail")
    catalog.add("We sent no code to this address.", "Nous n'avons envoyé aucun code à cette adresse.")
    catalog.add("Type the code we sent to your mailbox.", "Saisissez le code envoyé dans votre boîte.")
    catalog.add(CORE_MESSAGE, "Le greffon ne change pas les mots du cœur.")
    messages = package / "translations" / "fr" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    with open(messages / "messages.mo", "wb") as handle:
        write_mo(handle, catalog)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("acme_mailed_code.factor").MailedCodeFactor
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("acme_mailed_code")]:
            del sys.modules[name]


def test_a_plugins_label_messages_and_templates_are_translated(factor_app, plugin_package):
    factor = current_registry().register(plugin_package)
    with factor_app.test_request_context("/"), force_locale("fr"):
        assert str(factor.label) == "Code par e-mail"
        assert str(factor.finish_enrolment(None, {}, {}, None).message) == \
            "Nous n'avons envoyé aucun code à cette adresse."
        shown, core = render_template("factors/mailed_code/challenge.html").split("|")
        assert shown == "Saisissez le code envoyé dans votre boîte."
        assert core == "Ce code est incorrect. Réessayez."  # the core's wording, not the plugin's
    with factor_app.test_request_context("/"), force_locale("en"):
        assert str(factor.label) == "Code by e-mail"
