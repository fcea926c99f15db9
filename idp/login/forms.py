"""Login forms (Flask-WTF; CSRFProtect checks every POST's token, see idp/forms.py).

Field names are a contract: username, password, code.
"""
from __future__ import annotations

from flask import request
from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from idp.forms import Form


class StepForm(Form):
    """Every step's form carries the transaction version it was rendered for."""

    # A hidden field's label is never shown. Without one, WTForms translates a default label, which
    # resolves the request's locale on every POST, even one that only redirects.
    version = HiddenField(label="")

    def posted_version(self) -> int:
        """The posted version, or -1 for anything no transaction can have (not a number, or
        beyond the column's 32 bits: SQLite refuses such a value with an OverflowError)."""
        return _version_number(self.version.data)


def _version_number(posted) -> int:
    try:
        version = int(posted)
    except (TypeError, ValueError):
        return -1
    return version if 0 <= version < 2 ** 31 - 1 else -1


class PasswordLoginForm(StepForm):
    username = StringField(_l("E-mail"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField(_l("Sign in"))


# The longest `code` any form sends: a one-time code is short, but what an admin's recovery QR
# code holds (its idp-recovery:// URI, some 200 characters and more with a long address or
# issuer, docs/recovery.md 1.2) may be pasted whole. Longer is no code: the form again, a 400.
CODE_MAX = 2048


class CodeForm(StepForm):
    """A generic second-factor form: plugins add their own fields; `code` is the typed one-time code."""

    code = StringField(_l("Code"), validators=[Length(max=CODE_MAX)])


class ConsentForm(StepForm):
    pass


class PostedCode:
    """A code page's POST as the second-factor step reads it: `CodeForm`'s two checks (the
    version the page was rendered for; a code no longer than CODE_MAX) read straight from the
    posted form fields, as the form reads them (`idp.forms.Form.wrap_formdata`: no files, no JSON
    body; the first value of a repeated field). Building the WTForms form for them was about
    0.1 ms of every code POST; the page itself is rendered without a form object (its stencil)."""

    __slots__ = ("_version", "_code")

    def __init__(self) -> None:
        fields = request.form
        self._version, self._code = fields.get("version"), fields.get("code")

    def posted_version(self) -> int:
        return _version_number(self._version)

    def within_bounds(self) -> bool:
        return self._code is None or len(self._code) <= CODE_MAX
