"""The "Forgot your password?" pages (the rules are idp/password_reset.py).

    GET      /login/<handle>/forgot-password  from a login's password page: remembers that login
                                              for this browser, then the form below
    GET/POST /password/forgot                 the e-mail address (`username`); always the same answer
    GET      /password/forgot/sent            "if an account has that address, a link is on its way"
    GET/POST /password/reset/<token>          the mailed link: the new password twice (`password`, `confirm`)
    GET      /password/changed                done: back to the login in progress, or sign in
    GET/POST /invitation/<token>              an admin's invitation (idp.invitations): "Welcome to ORG",
                                              the first password twice, as a reset link's
    GET      /invitation/accepted             done: the address is confirmed, sign in

Registered only when `[password_reset] enabled` (else every one of them is a 404). Server-rendered
forms with the CSRF token (CSRFProtect checks every POST), usable without JavaScript; the POSTs are
rate-limited per address like the login form's, and the requests for a link besides by
`password_reset.per_ip` (each may mail someone): a 429 that names no account.

A login in progress is remembered as its handle in the (signed) session cookie, which already
binds the login to this browser: the "password changed" page links back to it while it lives,
still at its password step (the reset neither signs anyone in nor moves the login on). A link
opened in another browser, or after the login expired, offers a plain sign-in instead.
"""
from __future__ import annotations

from flask import Blueprint, Flask, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_babel import gettext as _
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length

from idp import password_reset, users
from idp.extensions import limiter, login_posts_per_ip, supported_locale
from idp.forms import Form, NewPasswordForm
from idp.login import session as login_session, transaction
from idp.login.transaction import State
from idp.template_i18n import plural_text

bp = Blueprint("password_reset", __name__)

RETURN_TO_LOGIN = "password_reset_login"  # session key: the handle of the login to go back to


class ForgotPasswordForm(Form):
    username = StringField(_l("E-mail"), validators=[DataRequired(), Length(max=320)])
    submit = SubmitField(_l("Send me a link"))


def init_app(app: Flask, settings) -> None:
    enabled = password_reset.settings_of(settings).enabled
    app.jinja_env.globals["password_reset_enabled"] = enabled  # the password page's link
    if enabled:
        app.register_blueprint(bp)


@bp.after_request
def _no_referrer(response):
    """The link's token is in the URL: no page of these sends it on in a Referer, not even to this
    site (an error page's links, the redirect after the new password)."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/login/<handle>/forgot-password")
def from_login(handle: str):
    login = _login_at_password_step(handle)
    if login is not None:
        session[RETURN_TO_LOGIN] = handle
    # The login's ui_locales goes along in the URL (the reset's pages do not load the login),
    # so that its pages and its mail speak the language the application asked for.
    return redirect(url_for(".forgot", ui_locales=_language_of(login)))


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(login_posts_per_ip, methods=["POST"])
@limiter.limit(password_reset.requests_per_ip, methods=["POST"], scope="password_reset_requests")  # mail bombing
def forgot():
    form = ForgotPasswordForm()
    if request.method == "GET":
        return _forgot_page(form)
    if not form.validate_on_submit():
        return _forgot_page(form, _("Enter your e-mail address."), 400)
    # Beside the answer, not before it: as fast whether the account exists or not.
    password_reset.request_in_background(form.username.data, locale=str(get_locale() or "en"))
    return redirect(url_for(".sent", ui_locales=supported_locale(request.args.get("ui_locales"))), 303)


@bp.get("/password/forgot/sent")
def sent():
    return render_template("password_reset/sent.html", minutes=password_reset.current_settings().link_ttl // 60)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(login_posts_per_ip, methods=["POST"])
def choose(token: str):
    return _choose(token, "reset", done=".changed")


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@limiter.limit(login_posts_per_ip, methods=["POST"])
def accept(token: str):
    """An invitation's link: the reset's page and rules, in words of welcome. A reset link's
    token here (or an invitation's at /password/reset/) is a dead link: each URL is one kind."""
    return _choose(token, "invite", done=".accepted")


@bp.get("/invitation/accepted")
def accepted():
    """Signed in by nothing (as after a reset): the person signs in now, and enrols a second
    factor there if their organization requires one."""
    return render_template("password_reset/changed.html", invited=True, resume=None, client_name="")


def _choose(token: str, kind: str, *, done: str):
    link = password_reset.live_link(token)
    if link is None or link.kind != kind:
        return _dead_link(kind)
    form = NewPasswordForm()
    if request.method == "GET":
        return _choose_page(form, link)
    if not form.validate_on_submit():
        return _choose_page(form, link, 400)
    try:
        password_reset.reset(token, form.password.data, kind=kind)
    except users.PasswordRefused as exc:
        form.password.errors = [str(exc)]
        return _choose_page(form, link, 400)
    except password_reset.LinkDead:
        return _dead_link(kind)
    # The user's sessions ended (set_password), this browser's too if it had one of theirs; the
    # cookie is left alone: it may carry a login in progress to go back to (`changed`).
    return redirect(url_for(done), 303)


@bp.get("/password/changed")
def changed():
    handle = session.get(RETURN_TO_LOGIN)
    login = _login_at_password_step(handle) if handle else None
    if handle and login is None:
        session.pop(RETURN_TO_LOGIN, None)
    return render_template("password_reset/changed.html",
                           resume=url_for("login.step", handle=handle) if login else None,
                           client_name=login.authz_request.get("client_name", "") if login else "")


def _login_at_password_step(handle: str):
    """The live login `handle` names in this browser if it is still at its password step, else None."""
    loaded = transaction.load(handle, login_session.browser_binding())
    return loaded.row if loaded is not None and loaded.row.state == State.IDENTIFY.value else None


def _language_of(login) -> str | None:
    return supported_locale(login.authz_request["params"].get("ui_locales")) if login is not None else None


@bp.errorhandler(429)
def _too_many(error):
    """A limit of these pages broke (the address's requests for a link, `password_reset.per_ip`,
    or its posts, as the login's): when to try again, in words, and in Retry-After. Decided
    before any look-up and the same whatever the address typed (the page does not even repeat
    it): it tells nothing of an account."""
    from idp.extensions import seconds_until_allowed

    wait = seconds_until_allowed()
    if wait >= 60:
        minutes = -(-wait // 60)  # rounded up: "in 1 minute" never lets them try too early
        message = plural_text("Too many requests from your network. Try again in %(num)s minute.",
                              "Too many requests from your network. Try again in %(num)s minutes.", minutes)
    else:
        message = plural_text("Too many requests from your network. Try again in %(num)s second.",
                              "Too many requests from your network. Try again in %(num)s seconds.", wait)
    return render_template("errors/http.html", code=429, message=message), 429, {"Retry-After": str(wait)}


def _forgot_page(form: ForgotPasswordForm, error: str | None = None, status: int = 200):
    action = url_for(".forgot", ui_locales=supported_locale(request.args.get("ui_locales")))
    return render_template("password_reset/forgot.html", form=form, error=error, action=action), status


def _choose_page(form: NewPasswordForm, link: password_reset.LiveLink, status: int = 200):
    return render_template("password_reset/choose.html", form=form, email=link.email, invited=link.kind == "invite",
                           org=link.org, action=url_for(request.endpoint, token=request.view_args["token"])), status


def _dead_link(kind: str = "reset"):
    """One answer for a link unknown, used, expired or killed: nothing tells them apart. (An
    invitation's page points to the admin: an invited person may have no verified address to ask
    a reset link for.)"""
    return render_template("password_reset/dead_link.html", invited=kind == "invite"), 410
