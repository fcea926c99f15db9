"""The security page's "Applications with access": taking one application's access away.

    POST     /account/security/applications/<client_id>/remove

The list itself is on the security page (idp.account.views.security, from idp.consents.of_user).
Removing an application's access forgets the user's consent to it and revokes what it holds
(idp.consents.withdraw); the next login to it asks for consent again (third-party) or simply
signs in (first-party).

No recent-login check and no confirmation page, as for ending a session (idp/account/sessions.py):
this only takes access away, and giving it back is one sign-in to the application. The CSRF
token is checked before any POST reaches a view (idp.forms).
"""
from __future__ import annotations

from flask import abort, flash, redirect, url_for
from sqlalchemy import select

from idp import consents
from idp.account.views import bp
from idp.db import db
from idp.login import session as login_session
from idp.models import Client
from idp.template_i18n import N_, isolated_text


@bp.post("/security/applications/<client_id>/remove")
@login_session.login_required
def remove_application(client_id: str):
    user = login_session.current_user()
    if consents.withdraw(user, client_id, actor_id=user.id, actor=user.email, by="self") is None:
        abort(404)  # no access to take: never had any, removed already, made up
    name = db.session.scalar(select(Client.name).where(Client.client_id == client_id))
    db.session.commit()
    flash(isolated_text(N_("%(application)s can no longer use your account: it must sign you in again."),
                        application=name or client_id), "success")
    return redirect(url_for(".security"))
