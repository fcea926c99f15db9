"""Thin HTTP handlers for the login pipeline: load the transaction, dispatch on its state.

Which module handles which state is the table below; a request for a transaction that
is unknown, expired, finished or foreign to this browser changes nothing and shows
the "expired" page.
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from idp.db import db
from idp.extensions import csrf, limiter, login_posts_per_ip, use_login_ui_locales
from idp.factors import challenges
from idp.login import session as login_session, transaction
from idp.login.steps import consent, enrol, password, recovery_codes, second_factor
from idp.login.steps.base import StepContext
from idp.login.transaction import State
from idp.oidc import urls
from idp.security.headers import CSP_FORMS_TO_A_CLIENT

bp = Blueprint("login", __name__)
# The sign-out refusals' reasons, beside /authorize's (idp.oidc.views._error_page): the page says
# them in fixed words, the application's developer finds the exact one here.
oidc_log = logging.getLogger("idp.oidc")

STEPS = {
    State.IDENTIFY.value: password,
    State.ENROL.value: enrol,
    State.SECOND_FACTOR.value: second_factor,
    State.RECOVERY_CODES.value: recovery_codes,
    State.CONSENT.value: consent,
}



@bp.record_once
def _answer_for_plugins(state) -> None:
    """What a plugin asks of a login it began an enrolment for (idp.factors.directory
    .login_enrolment_open), answered by the pipeline that knows what a login owes."""
    state.app.extensions["idp.login_enrolment_open"] = enrol.login_still_enrolling


def _context(handle: str) -> StepContext | None:
    loaded = transaction.load(handle, login_session.browser_binding())
    if loaded is None or loaded.row.state in transaction.TERMINAL:
        return None
    return StepContext(loaded.row, handle, loaded.user)


@bp.get("/login/<handle>")
def step(handle: str):
    ctx = _context(handle)
    if ctx is None:
        return redirect(url_for("login.expired"))
    return STEPS[ctx.row.state].show(ctx)


# The same URL's POST is its own view so that only posts pass through the limiter's decorator
# (which, even when limited to POST, filters its limits on every request it wraps).
@bp.post("/login/<handle>")
@limiter.limit(login_posts_per_ip)
def step_submit(handle: str):
    ctx = _context(handle)
    if ctx is None:
        return redirect(url_for("login.expired"))
    return STEPS[ctx.row.state].submit(ctx)


@bp.post("/login/<handle>/factor/<name>")
@limiter.limit(login_posts_per_ip)
def choose_factor(handle: str, name: str):
    """Switch to another enrolled factor (or a recovery factor) on the second-factor page, or to
    another method to set up at the enrolment step. Each switch begins a challenge or an
    enrolment, which may write (a push activation is a row and an audit event): limited per
    address at the login forms' rate, as their posts are."""
    ctx = _context(handle)
    if ctx is None:
        return redirect(url_for("login.expired"))
    return second_factor.choose(ctx, name)


@bp.get("/login/<handle>/poll")
def poll(handle: str):
    """For factors that complete elsewhere (push): JSON status for the waiting page's script."""
    ctx = _context(handle)
    if ctx is None:
        return jsonify({"status": "expired"}), 410
    return second_factor.poll(ctx)


@bp.post("/login/<handle>/cancel")
def cancel(handle: str):
    ctx = _context(handle)
    if ctx is None:
        return redirect(url_for("login.expired"))
    if not transaction.advance(ctx.row, State(ctx.row.state), ctx.row.version, State.CANCELLED):
        # The login moved on meanwhile (finished in another request, or expired): this cancel
        # tells the client nothing, not an access_denied beside the code it may have received.
        return redirect(url_for("login.step", handle=handle))
    # Its requests out of band end with it (a phone no longer lists its push request), committed
    # after the cancellation itself, which must not wait on a challenge row's lock.
    challenges.expire_for_login(ctx.row.id)
    db.session.commit()
    if ctx.row.authz_request.get("internal"):  # the provider's own pages: no client to tell
        return redirect(url_for("login.home"))
    return consent._access_denied(ctx)


@bp.get("/login/expired")
def expired():
    return render_template("login/expired.html"), 400


@bp.route(urls.PATHS["end_session_endpoint"], methods=["GET", "POST"])
@csrf.exempt  # a client's own POST carries no token of ours: the view checks it (_confirmed_here)
def logout():
    """RP-initiated logout, by GET or POST (with id_token_hint and a registered
    post_logout_redirect_uri; RP-Initiated Logout 1.0, section 2), or plain sign-out."""
    from authlib.oauth2.rfc6749.errors import OAuth2Error

    from idp.oidc import frontchannel
    from idp.oidc.server import server

    if request.method == "POST" and login_session.current_session() is None and not _confirmed_here():
        # A client's page posting its logout from its own site: the browser sends no cookie of
        # ours with a cross-site POST (SameSite=Lax), so this browser looks signed out here, and
        # would be sent back to the client as if signed out while its session lives on. As
        # /authorize answers a POST (idp.oidc.views.authorize_by_post): a 303 to the same request
        # as a GET, a top-level navigation, which carries the cookies. (Signed out indeed, the
        # GET answers as this POST would have.)
        return redirect(f"{url_for('login.logout')}?{urlencode(list(request.form.items(multi=True)))}", code=303)
    if request.method == "POST":
        # A POST's parameters are its body's (the query is not read): its ui_locales too, which
        # the language choice (idp.extensions.select_locale) looks for in the query only.
        use_login_ui_locales(request.form.get("ui_locales"))
    try:
        end_session = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        oidc_log.info("sign-out request refused with a page: %s", error.error,
                      extra={"fields": {"description": (error.get_error_description() or "")[:300]}})
        # A fixed text: Authlib's description quotes the request (a crafted link's own sentence).
        return render_template("errors/oauth.html", error=error.error, sign_out=True, description=_(
            "The application's sign-out request is not valid (for example, its ID token or its address "
            "to come back to is not one it registered).")), 400
    if _unregistered_return_address(end_session):
        # Not redirected (RP-Initiated Logout 1.0, section 3), and not signed out either: an error
        # the user can see, rather than a silent sign-out the application did not ask for (its
        # own address was misconfigured, or someone else's link named theirs).
        oidc_log.info("sign-out request refused with a page: invalid_request", extra={"fields": {
            "description": "post_logout_redirect_uri is not one of the client's registered post-logout redirect URIs"
            if end_session.client is not None else
            "post_logout_redirect_uri without a known client (an id_token_hint or a registered client_id)"}})
        return render_template("errors/oauth.html", error="invalid_request", sign_out=True, description=_(
            "The application's sign-out request names an address to come back to that it did not "
            "register. You are still signed in.")), 400
    user = login_session.current_user()
    if user is not None and not _confirmed_here() and not _hint_names_this_session(end_session.id_token_claims):
        # A link or a cross-site form anyone could have planted (an <img>, their own ID token as
        # the hint): ask first. Confirmed, the form ends at the client's (registered) logout URI.
        return (render_template("login/logout_confirm.html", user=user), 200,
                {"Content-Security-Policy": CSP_FORMS_TO_A_CLIENT})
    # The clients this session signed in that want a frame at sign-out: read before it ends.
    ending = login_session.current_session()
    frames = frontchannel.frame_uris(ending.user_id, ending.sid) if ending is not None else []
    response = server.create_endpoint_response("end_session", end_session)
    if frames:
        return frontchannel.signed_out_page(frames, continue_to=response.location if response else None)
    return response or render_template("login/logged_out.html")


def _unregistered_return_address(end_session) -> bool:
    """Whether the request names a post_logout_redirect_uri that its client did not register
    (or names one with no client to check it against)."""
    asked = end_session.request.payload.data.get("post_logout_redirect_uri")
    if not asked:
        return False
    client = end_session.client
    return client is None or asked not in client.client_metadata.get("post_logout_redirect_uris", [])


def _confirmed_here() -> bool:
    """Whether this is the confirmation form of our own page (a POST with our CSRF token)."""
    from flask_wtf.csrf import validate_csrf
    from wtforms import ValidationError

    if request.method != "POST":
        return False
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    return True


def _hint_names_this_session(claims: dict | None) -> bool:
    """Whether the logout request's id_token_hint was issued for this browser's user (and, when
    the token names one, for this very session): only then is no confirmation asked (OpenID
    RP-Initiated Logout 1.0, section 2: other requests are suspect)."""
    if not claims:
        return False
    user, session = login_session.current_user(), login_session.current_session()
    if user is None or claims.get("sub") != user.public_id:
        return False
    return "sid" not in claims or (session is not None and claims["sid"] == session.sid)


@bp.get("/")
def home():
    user = login_session.current_user()
    if user is None:
        return render_template("home.html", user=None)
    return redirect(url_for("account.security"))
