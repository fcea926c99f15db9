"""What every step receives: the transaction, its browser handle, and a render helper."""
from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, url_for

from idp.login import user as login_user
from idp.login.transaction import TransactionRow
from idp.login.user import LoginUser
from idp.security.headers import CSP_FORMS_TO_A_CLIENT
from idp.template_i18n import plural_text


@dataclass
class StepContext:
    row: TransactionRow
    handle: str
    user: LoginUser | None = None  # the transaction's user, read with it (idp.login.transaction.load)

    def transaction_user(self) -> LoginUser | None:
        """The transaction's user: as read with the transaction, unless a step has named another since."""
        if self.user is not None and self.user.id == self.row.user_id:
            return self.user
        return login_user.load(self.row.user_id) if self.row.user_id is not None else None

    @property
    def params(self) -> dict:
        return self.row.authz_request["params"]

    @property
    def client_name(self) -> str:
        return self.row.authz_request.get("client_name", "")

    def render(self, template, status: int = 200, **values):
        values.setdefault("action", url_for("login.step", handle=self.handle))
        values.setdefault("version", self.row.version)
        values.setdefault("client_name", self.client_name)
        values.setdefault("handle", self.handle)
        return render_template(template, **values), status, self._headers()

    def render_from_stencil(self, template, status: int, error: str | None, key: dict, values_for):
        """`render` for a page many logins see alike (the password page, the challenge page and
        again after a wrong code): from its stencil (idp.login.stencil), the same bytes for a
        fraction of the rendering. `values_for(handle)` gives the template's values other than the
        login's own (action, version, client name, handle, error, CSRF token), which `key` names
        (what the page shows that another login's page for the same template and language may not:
        the method, its view, the others offered)."""
        from flask_wtf.csrf import generate_csrf

        from idp.login import stencil

        per_login = {"handle": self.handle, "version": self.row.version, "client_name": self.client_name,
                     "csrf_token": generate_csrf(), "error": error, "key": key}

        def marked(marks: dict) -> dict:
            return dict(values_for(marks["handle"]), action=url_for("login.step", handle=marks["handle"]),
                        version=marks["version"], client_name=marks["client_name"], handle=marks["handle"],
                        error=marks["error"], csrf_token=lambda: marks["csrf_token"])

        page = stencil.render(template, per_login, marked)
        if page is None:
            return self.render(template, status=status, error=error, **values_for(self.handle))
        return page, status, self._headers()

    def _headers(self) -> dict:
        # Any form of a login step may end in the redirect to the client (the code, or an error).
        return {"Content-Security-Policy": CSP_FORMS_TO_A_CLIENT}


def wait_message(seconds: int) -> str:
    """What a locked-out guesser is told: how long to wait, nothing more."""
    return plural_text("Too many attempts. Wait %(num)s second and try again.",
                       "Too many attempts. Wait %(num)s seconds and try again.", seconds)
