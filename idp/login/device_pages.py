"""Where a person signs a device in (RFC 8628's verification URI; the rules are idp/oidc/device_flow.py).

    GET  /device[?user_code=XXXX-XXXX]  the code the device shows (`user_code`), filled in from
                                        verification_uri_complete
    POST /device                        the code: "Sign in to APP on your device?" with Continue
                                        and Deny (the form again, with an error, for a code that
                                        is unknown, expired or already used)
    POST /device  action=allow          the login (idp.login.pipeline.start_device): password,
                                        second factor and consent as the client and the 2FA
                                        policy need, or this browser's session when it is
                                        enough (the page then names its user); its end
                                        approves the device
         action=another_account         the same login, from the password page whatever the
                                        session (a shared computer, someone else signed in)
         action=deny                    the device is told access_denied
    GET  /device/approved | /device/denied   "go back to your device"

The confirmation comes before the login on purpose (RFC 8628 5.4, remote phishing): someone
may send a person a code of a device of theirs ("enter this code to claim your prize"); the
page names the application and says to continue only if the person started it on a device in
front of them. Server-rendered forms with the CSRF token (CSRFProtect checks every POST),
usable without JavaScript; the POSTs are rate-limited per address like the login form's, and
wrong codes lock the address out like wrong second-factor codes (shared by every worker), so
user codes cannot be guessed at speed.
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from idp import lockout
from idp.db import db
from idp.extensions import limiter, login_posts_per_ip
from idp.login import session as login_session
from idp.login.steps.base import wait_message
from idp.security.guess_keys import address_key
from idp.forms import Form
from idp.oidc import device_flow, urls
from idp.oidc.server import client_record

bp = Blueprint("device", __name__)


class UserCodeForm(Form):
    user_code = StringField(_l("Code"), validators=[DataRequired(), Length(max=32)])


@bp.route(urls.PAGES["device_verification_uri"], methods=["GET", "POST"])
@limiter.limit(login_posts_per_ip, methods=["POST"])
def enter():
    form = UserCodeForm()
    if request.method == "GET":
        form.user_code.data = (request.args.get("user_code") or "")[:32]
        return _code_page(form)
    if not form.validate_on_submit():
        return _code_page(form, _("Enter the code your device shows."), 400)
    guesses = _guesses_from_this_address()
    # Counted before the look-up and committed at once (a guess counts whatever else happens):
    # guesses posted together each take their turn at the count, so no burst of them passes a
    # check that none of them has failed yet. Not `touch`ed: a right code takes its count back
    # and must not keep the address's earlier wrong ones alive (its people sign in there every
    # day: as `PasswordGuess.admit`); a wrong one keeps them (`lockout.keep`).
    wait = lockout.reserve(guesses, touch=False)
    db.session.commit()
    if wait:
        return _code_page(form, wait_message(wait), 429)
    device = device_flow.pending(form.user_code.data)
    client = _client_of(device)
    if device is None or client is None:
        lockout.keep(guesses)
        db.session.commit()
        return _code_page(form, _("That code is not valid: it may have expired or been used already. "
                                  "Check it on your device, or start again there."), 400)
    lockout.release(guesses)  # a right code was no failure; the others' count stays
    db.session.commit()
    action = request.form.get("action")
    if action == "deny":
        signed_in = login_session.current_user()
        # False: approved from another browser meanwhile
        denied = device_flow.deny(device.id, user_id=signed_in.id if signed_in is not None else None)
        db.session.commit()
        return redirect(url_for(".denied" if denied else "login.expired"), 303)
    from idp.login import pipeline

    if action in ("allow", "another_account"):
        return pipeline.start_device(device, client, another_account=action == "another_account")
    return render_template("device/confirm.html", form=form, client_name=client.name,
                           user_code=device_flow.displayed(device.user_code),
                           signs_in_as=pipeline.device_signs_in_as(device, client))


@bp.get("/device/approved")
def approved():
    return render_template("device/finished.html", approved=True)


@bp.get("/device/denied")
def denied():
    return render_template("device/finished.html", approved=False)


def _guesses_from_this_address() -> str:
    """The lockout key of wrong user codes from this address (its /64 for IPv6): shared by every
    worker (Redis or the database, idp.lockout), with the per-address limits of second-factor
    codes, unlike the form's request rate, which each worker counts alone without Redis. A
    right code clears nothing: one real device of the guesser's would wipe the count."""
    return f"device:ip:{address_key(request.remote_addr)}"


def _client_of(device):
    """The device's client (a removed client's devices are deleted with it; one read from a
    worker's cached copy meanwhile finds none here)."""
    return client_record(device.client_id) if device is not None else None


def _code_page(form: UserCodeForm, error: str | None = None, status: int = 200):
    return render_template("device/enter.html", form=form, error=error), status
