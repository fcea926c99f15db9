"""Signed-in sessions (SSO): the Flask cookie holds one random value; the row holds the facts.

The Flask session cookie is signed, not encrypted, so it carries opaque random values
only: `sso` (this browser's signed-in session) and `browser` (binds login transactions
to the browser that started them). Signing in replaces the cookie's values (session
rotation); the old session row is revoked.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app, g, request, session
from sqlalchemy import bindparam, update

from idp import session_idle, user_agent
from idp.db import db, utcnow
from idp.login.user import UserLike
from idp.models import User, UserSession
from idp.security.tokens import random_token, sha256_hex


_SESSIONS = UserSession.__table__


@dataclass(frozen=True)
class SessionFacts:
    user_id: int
    sid: str
    auth_time: int
    amr: tuple[str, ...]
    acr: str
    created_at: object


def _load() -> UserSession | None:
    token = session.get("sso")
    if not token:
        return None
    row = db.session.get(UserSession, sha256_hex(token))
    now = utcnow()
    if (row is None or row.revoked_at is not None or row.expires_at <= now
            or session_idle.is_idle(row.last_used_at, now)):  # idle too long: as expired
        return None
    due = now - timedelta(seconds=session_idle.stamp_interval())
    if row.last_used_at <= due:
        _stamp_after_request(row.id, now, due)
    return row


# The session's last use, written only when the stored one is older than the stamp's interval:
# of two requests of one session at the same moment, one writes; a session ended meanwhile stays
# as it ended.
_STAMP = (update(UserSession)
          .where(UserSession.id == bindparam("row_id"), UserSession.last_used_at <= bindparam("due"),
                 UserSession.revoked_at.is_(None))
          .values(last_used_at=bindparam("now")))


def _stamp_after_request(row_id: str, now: datetime, due: datetime) -> None:
    """Record that this request relied on the session: a conditional UPDATE alone, in a
    transaction of its own once the request's has ended (db.alone_after_request), at most once
    a minute per session (idp.session_idle). Not in the request's transaction: a read-only page
    (the account pages' GETs, a refused prompt=none) never commits, and on PostgreSQL the row's
    lock would be held up to the request's end, taken before the user's row that a login's
    finish locks next, the reverse of a sign-out everywhere's order (user, then sessions):
    the two would deadlock. The password and code POSTs, which create sessions, write the time
    in their INSERT (`start`) and add no statement."""
    db.alone_after_request(_STAMP, {"row_id": row_id, "now": now, "due": due})


def current_session() -> UserSession | None:
    if "idp_session_row" not in g:
        g.idp_session_row = _load()
    return g.idp_session_row


def holds(sid: str) -> bool:
    """Whether this browser is still signed in with the session whose public id is `sid` (a
    login that an SSO session answered finishes only while that session lives)."""
    row = current_session()
    return row is not None and row.sid == sid


def hold_live(sid: str) -> bool:
    """Whether the session `sid` is still live, its row then locked FOR SHARE for the rest of
    this transaction (PostgreSQL; SQLite's write lock is already held). A login that the session
    answers holds it while it issues its code: a sign-out of that session (end_current,
    idp.sessions.end) either came first, and is seen here, or waits for the code to be
    committed, and then withdraws it and tells its client (the session_clients row is there).
    `holds`, read at the start of the request, cannot tell: the sign-out may commit after it."""
    from idp import sessions

    return sessions.is_live(sid)


def current_user() -> User | None:
    """The signed-in user, or None. Disabled users are signed out."""
    row = current_session()
    if row is None:
        return None
    user = db.session.get(User, row.user_id)
    return user if user is not None and not user.disabled else None


def browser_binding() -> str:
    """This browser's binding value (created on first use), hashed for storage."""
    value = session.get("browser")
    if not value:
        value = session["browser"] = random_token(24)
    return sha256_hex(value)


def start(user: UserLike, *, auth_time: int, amr: list[str], acr: str, started_at: int | None = None,
          credential_ids: list[int] = ()) -> str:
    """Sign the user in: revoke the previous session and rotate every cookie value. Returns the
    new session's public `sid`. `started_at`: when the login's first step was done (unix time;
    default now), what recent-login checks count from; `credential_ids`: what the login proved."""
    previous = session.get("sso")
    if previous:
        replaced = db.session.execute(
            update(UserSession).where(UserSession.id == sha256_hex(previous), UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow()).returning(UserSession.user_id, UserSession.sid)).first()
        if replaced is not None:  # ended as by a sign-out: the applications it signed in to are told
            from idp.oidc import backchannel

            if replaced.user_id != user.id:
                # Someone else signs in on this browser: the other user's session ends as at a
                # sign-out, with what needs them signed in (end_current). The same user signing
                # in again (prompt=login, max_age) keeps what their applications hold.
                from idp import sessions

                sessions.withdraw_grants(replaced.user_id, replaced.sid, offline_access_too=False)
            backchannel.sessions_ended(replaced.user_id, [replaced.sid])
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    token = random_token(32)
    session["sso"] = token
    session["browser"] = random_token(24)
    session.permanent = True
    lifetime = int(current_app.extensions["idp.settings"].get("session.lifetime", 43200))
    now = utcnow()
    values = dict(id=sha256_hex(token), sid=random_token(16), user_id=user.id, auth_time=auth_time,
                  amr=list(amr), acr=acr, credential_ids=list(credential_ids), created_at=now, last_used_at=now,
                  expires_at=now + timedelta(seconds=lifetime),
                  login_started_at=(datetime.fromtimestamp(started_at, timezone.utc).replace(tzinfo=None)
                                    if started_at is not None else now),
                  # where it was made, for "Where you're signed in" (idp.sessions)
                  user_agent=user_agent.for_storage(request.headers.get("User-Agent")),
                  ip=(request.remote_addr or "")[:64] or None)
    # One prebuilt INSERT, no ORM entity: should anything later in this request ask for the
    # current session, current_session() reads the new row (this transaction sees it).
    db.run_insert(_SESSIONS, values)
    g.pop("idp_session_row", None)
    return values["sid"]


def add_proof(amr_values, credential_id: int) -> None:
    """A factor enrolled from the security page proves possession: the session now holds it too
    (so that a user who switches 2FA on is not sent to sign in again by the policy), and stands
    on that credential as on those its login proved."""
    from idp.login.outcome import compute_amr
    from idp.policy.decide import acr_for

    row = current_session()
    if row is None:
        return
    steps = [{"method": "session", "amr": list(row.amr)}, {"method": "enrolment", "amr": list(amr_values)}]
    row.amr = compute_amr(steps)
    row.acr = acr_for(row.amr)
    row.credential_ids = [*(row.credential_ids or ()), credential_id]
    db.session.add(row)


def end_current() -> None:
    """Sign out this browser: its session ends, and what was obtained through it that needs a
    signed-in user (codes not yet redeemed, device approvals not yet polled, access tokens
    without offline access: idp.sessions.withdraw_grants)."""
    token = session.get("sso")
    if token:
        ended = db.session.execute(update(UserSession).where(UserSession.id == sha256_hex(token),
                                                             UserSession.revoked_at.is_(None))
                                   .values(revoked_at=utcnow()).returning(UserSession.user_id, UserSession.sid)).first()
        if ended is not None:
            from idp import audit, sessions
            from idp.oidc import backchannel

            sessions.withdraw_grants(ended.user_id, ended.sid, offline_access_too=False)
            audit.record_about_user("login.signed_out", ended.user_id, actor_id=ended.user_id)
            backchannel.sessions_ended(ended.user_id, [ended.sid])
        db.session.commit()
    locale = session.get("locale")  # the browser's language choice is not the user's session
    session.clear()
    if locale:
        session["locale"] = locale
    g.idp_session_row = None


def is_recent(seconds: int | None = None) -> bool:
    """Were all the steps of this session's login (password, and second factor if any) within `seconds`?"""
    row = current_session()
    if row is None:
        return False
    limit = seconds if seconds is not None else int(
        current_app.extensions["idp.settings"].get("login.recent_login", 300))
    return (utcnow() - row.login_started_at).total_seconds() <= limit


def user_or_sign_in():
    """(user, None) for a signed-in user, else (None, a response that signs in and comes back here).

    A session is not re-judged against a policy that changed after it started (an admin who
    requires 2FA for everyone keeps the page that confirms it): requirements apply at the next
    login, and to every new token (see idp.login.gate.session_shortfall and the refresh grant).
    """
    from idp.login import pipeline

    user = current_user()
    if user is None:
        _count_an_anonymous_login_start()
        here = request.full_path.rstrip("?") if request.method == "GET" else "/account/security"
        return None, pipeline.start_internal(here)
    return user, None


def _count_an_anonymous_login_start() -> None:
    """A login begun for a visitor who is not signed in is a stored row until it expires (with the
    page to come back to, up to 2 KiB): limited per address at the login forms' rate, counted
    apart, as /authorize limits its anonymous logins (an audit stored one per request, without
    end, through the account pages). Beyond it a 429 page with Retry-After."""
    from werkzeug.exceptions import TooManyRequests

    from idp.extensions import client_address, login_posts_per_ip
    from idp.factors.ratelimit import spend_request

    wait = spend_request(login_posts_per_ip(), "own_page_login", client_address())
    if wait is not None:
        raise TooManyRequests(retry_after=wait)


def login_required(view):
    """Pages of the provider itself: an anonymous visitor signs in first and comes back."""
    from functools import wraps

    @wraps(view)
    def wrapper(*args, **kwargs):
        _user, response = user_or_sign_in()
        return response if response is not None else view(*args, **kwargs)

    return wrapper


def require_recent_login():
    """None when the last full login is recent, else a response that re-runs both steps and comes back.

    Full: a user who holds a second factor has proven one in it. A login on the password alone
    is possible for such a user (exempt from 2FA, with a factor set up all the same), but what
    these pages change (factors, passwords, roles) must not be changed by whoever knows the
    password: adding a factor would even have made that session's password count as 2FA."""
    second_factor = _holds_an_unproven_second_factor()
    if is_recent() and not second_factor:
        return None
    from idp.login import pipeline

    target = request.referrer if request.method == "POST" else request.full_path.rstrip("?")
    from urllib.parse import urlsplit

    path = urlsplit(target or "/").path or "/"
    return pipeline.start_internal(path, fresh=True, second_factor=second_factor)


def proved_second_factor() -> bool:
    """Did this browser's session prove a second factor (at its login, or by adding one)?"""
    row = current_session()
    return row is not None and "mfa" in (row.amr or ())


def _holds_an_unproven_second_factor() -> bool:
    """A second factor the user held when this session began, which its login did not prove.
    (One added since, by this session's own enrolment say, a phone that registered before the
    page's Continue, is no reason to sign in again: whoever could add it could have added it
    first.)"""
    row, user = current_session(), current_user()
    if row is None or user is None or "mfa" in (row.amr or ()) or not user.second_factor_count:
        return False
    from idp.factors.registry import current_registry
    from idp.factors.types import FactorKind

    registry = current_registry()
    second_factors = {factor.name for factor in registry.all(kind=FactorKind.SECOND_FACTOR)}
    return any(credential.factor in second_factors and credential.created_at < row.created_at
               for credential in registry.store.list(user.id))
