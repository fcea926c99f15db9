"""Self-service password reset by e-mail: the rules (the pages are idp/login/password_reset_pages.py).

    request_in_background(address, locale)
                                    what the form does: request_link then deliver, beside the answer
    request_link(address, locale)   a link for the account with this address, if one may be sent:
                                    the `Delivery` to mail, else None
    deliver(app, delivery)          the mail (a failed one kills its link, audited)
    live_link(token)                what a link would reset, or None (unknown, used, expired, dead)
    reset(token, password)          the new password; the link spent exactly once

An admin's invitation (idp.invitations) is a link of another kind (PasswordReset.kind "invite"):
the same table, token, limits, "works once" and "dies with the password"; it lives
`invite_ttl`, dies too once its user signed in with a password (a first password the admin
handed over), its page and mail welcome the person, and using it proves their address too
(`email_verified`) and is audited as `user.invitation_accepted` instead of `user.password_reset`.

Why it is built this way:

- No account enumeration. The page answers the same whether an account has the address or not,
  is disabled, or has had its links for the hour, and as fast: the look-up, the checks, the
  writes and the mail happen on a thread of its own (`request_in_background`), so neither the
  database work (an existing account's lock, count, audit row and commit: 1.6 ms against 4.0 ms
  here) nor an SMTP conversation makes the answer slower for real accounts. That thread starts
  its work once the answer has been sent (WSGI's `close()`), or after ANSWER_WAIT seconds at the
  latest (werkzeug's development server calls `close()` only once the browser closes the
  connection, which a browser may never do): working beside the answer, it took the GIL from
  it for real accounts only, and their answers came a millisecond later (medians of 200 on one
  machine: 7.2 ms against 6.1 ms), enough to tell them apart.
- A link is a password in a mailbox: a random 256-bit token, of which only the SHA-256 is
  stored; it works once, for `link_ttl` seconds, and it is built from the issuer, never from the
  request's Host header (a forged Host would mail the user a link to someone else's site).
- Per address, at most `per_ip` requests (the pages' limit, before any look-up: the same 429
  whatever the address typed), so that no one mails many people from one address; per account,
  at most `per_hour` links an hour, so that no one floods one mailbox from many addresses (and
  ATTEMPTS_PER_LINK times as many attempts, links whose mail the relay refused included),
  counted from the account's own rows while its user row is locked: requests posted at once are counted one after the other, in every
  process. That lock is the one a sign-out everywhere takes first (idp.users), so a link is
  never created after a new password or a disabling in the same instant: those kill every
  live link of the user, and this one either was there to be killed or comes after.
- Spending a link is one conditional UPDATE (`used_at IS NULL AND expires_at > now`, the
  project's "exactly once", `db.claim`), after the user row lock, in the order a sign-out
  everywhere takes them. The new password goes through idp.users.set_password: its rules, its
  audit event, its sign-out everywhere (which kills the user's other links too). A reset
  proves the mailbox, not the second factor: the next login asks for it as always.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import after_this_request, current_app
from sqlalchemy import bindparam, case, func, or_, select, update

from idp import audit, users
from idp.db import db, utcnow
from idp.login import user as login_user
from idp.models import AuditEvent, Organization, PasswordReset, User
from idp.ops import logs
from idp.security.tokens import random_token, sha256_hex

log = logging.getLogger(__name__)

PURPOSE = "password_reset"  # the notifier's wording (idp.notify.base)
TOKEN_BYTES = 32            # 256 bits
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # token_urlsafe(32): anything else names no link
# Requests handled at once per process (each a thread: a look-up, and for a real account a
# mail that may wait on the relay). Anyone may ask, from as many addresses as they have: past
# this, a request is dropped (logged) rather than piling up threads. Its asker saw the same
# answer; a real user whose request was dropped during such a flood asks again.
MAX_REQUESTS_IN_FLIGHT = 16
_in_flight = threading.BoundedSemaphore(MAX_REQUESTS_IN_FLIGHT)
# Seconds a request's thread waits for its answer to be sent before it starts anyway (module docstring).
ANSWER_WAIT = 1.0


@dataclass(frozen=True)
class ResetSettings:
    enabled: bool
    link_ttl: int   # seconds; 300 to 86400 (idp.config_ranges)
    per_hour: int   # links mailed per account per hour; 1 to 100 (invitations included)
    invite_ttl: int = 604800  # seconds an invitation lives; 3600 to 30 days (idp.config_ranges)


def settings_of(settings) -> ResetSettings:
    return ResetSettings(enabled=bool(settings.get("password_reset.enabled", True)),
                         link_ttl=int(settings.get("password_reset.link_ttl", 1800)),
                         per_hour=int(settings.get("password_reset.per_hour", 3)),
                         invite_ttl=int(settings.get("password_reset.invite_ttl", 604800)))


def current_settings() -> ResetSettings:
    return settings_of(current_app.extensions["idp.settings"])


def requests_per_ip() -> str:
    """Requests for a link per address (`password_reset.per_ip`), besides the login forms' rate:
    each may mail a real person, and `per_hour` counts per account only, so without it one address
    could mail thousands of people (a few links each) an hour. Checked before anything is looked
    up, so its 429 is the same for every address typed, known or not, and as fast."""
    return str(current_app.extensions["idp.settings"].get("password_reset.per_ip", "10 per hour"))


@dataclass(frozen=True)
class Delivery:
    """A link to mail, once the answer to the request has left."""

    reset_id: int
    user_id: int
    org_id: int
    to: str
    link: str
    locale: str | None
    minutes: int
    facts: object = None  # the requester's (audit.request_facts), for the events of the delivery
    purpose: str = PURPOSE  # the mail's wording: PURPOSE, or "invitation" (idp.invitations)
    org: str = ""           # the organization's name, which an invitation names
    # Who asked for it, for the events of the delivery: nobody known for a reset link (its
    # requester is anonymous); the admin (or `cli`) for an invitation (idp.invitations).
    actor: str = ""
    actor_id: int | None = None


@dataclass(frozen=True)
class LiveLink:
    reset_id: int
    user_id: int
    email: str
    kind: str = "reset"  # PasswordReset.kind
    org: str = ""        # the user's organization's name (an invitation's page welcomes them to it)


class LinkDead(Exception):
    """The link is unknown, used, expired, or its user disabled: ask for another one."""


# The user's row held until the commit, and whether a link may go to them: None when disabled (or
# gone). FOR NO KEY UPDATE, as a login's last step takes it (idp.login.user.hold_for_sign_in).
_HOLD_USER = (select(User.__table__.c.email_verified)
              .where(User.__table__.c.id == bindparam("user_id"), User.__table__.c.disabled.is_(False))
              .with_for_update(key_share=True))
_RESETS = PasswordReset.__table__
# The account's links of the last hour: (those mailed or still being mailed, every attempt). A link
# whose mail the relay refused does not spend `per_hour` (the user asks again once the relay is
# back), but each is an audited SMTP attempt that anyone may ask for, with no password: all of
# them together are bounded by ATTEMPTS_PER_LINK times `per_hour`.
_LINKS_SINCE = (select(func.coalesce(func.sum(case((_RESETS.c.mail_failed_at.is_(None), 1), else_=0)), 0),
                       func.count())
                .select_from(_RESETS)
                .where(_RESETS.c.user_id == bindparam("user_id"), _RESETS.c.created_at > bindparam("since")))
ATTEMPTS_PER_LINK = 3
_REFUSED_SINCE = (select(AuditEvent.id)  # (in the user's organization: idp.models.audit, ix_audit_org_subject)
                  .where(AuditEvent.org_id == bindparam("org_id"), AuditEvent.subject_id == bindparam("user_id"),
                         AuditEvent.event == "password_reset.refused",
                         AuditEvent.at > bindparam("since"),
                         AuditEvent.details["reason"].as_string() == bindparam("reason"))
                  .limit(1))
_LIVE_LINK = (select(_RESETS.c.id, _RESETS.c.user_id, User.__table__.c.email, _RESETS.c.kind,
                     Organization.__table__.c.name)
              .join(User.__table__, User.__table__.c.id == _RESETS.c.user_id)
              .join(Organization.__table__, Organization.__table__.c.id == User.__table__.c.org_id)
              .where(_RESETS.c.token_hash == bindparam("token_hash"), _RESETS.c.used_at.is_(None),
                     _RESETS.c.expires_at > bindparam("now"), User.__table__.c.disabled.is_(False),
                     # An invitation is for someone who never got in (idp.invitations.may_invite): once
                     # they signed in with a first password, "Forgot your password?" serves them.
                     or_(_RESETS.c.kind != "invite", User.__table__.c.password_hash.is_(None),
                         User.__table__.c.last_login_at.is_(None))))


def hold_user(user_id: int) -> bool | None:
    """The user's row held till the commit (as a request for a link holds it), and whether their
    address is verified; None when they are disabled or gone. For idp.invitations too."""
    return db.run(_HOLD_USER, {"user_id": user_id}).scalar()


def links_spent(user_id: int, config: ResetSettings, now: datetime) -> bool:
    """Whether the account's links of the last hour (both kinds) leave none to send now: `per_hour`
    mailed, or ATTEMPTS_PER_LINK times as many attempts. Under the user's row lock (`hold_user`)."""
    mailed, attempts = db.run(_LINKS_SINCE, {"user_id": user_id, "since": now - timedelta(hours=1)}).first()
    return mailed >= config.per_hour or attempts >= ATTEMPTS_PER_LINK * config.per_hour


def request_in_background(address: str, *, locale: str | None) -> threading.Thread | None:
    """`request_link`, then the link's mail when one goes out, on a thread of its own, started
    now, whose work begins once this request's answer has been sent (or ANSWER_WAIT has
    passed): the answer neither waits for the work nor shares the process with it. The look-up,
    the checks and the writes take their time for an existing account only, and that time would
    tell whether one has the address. The thread's audit events name the requester's address
    and browser all the same. Not a daemon: a worker that exits gracefully finishes what it was
    asked first. None: too many requests in flight already (MAX_REQUESTS_IN_FLIGHT), this one
    is dropped. In a request only."""
    in_flight = _in_flight
    if not in_flight.acquire(blocking=False):
        log.warning("password reset request dropped: %d already in progress", MAX_REQUESTS_IN_FLIGHT)
        return None
    answered = threading.Event()
    try:
        @after_this_request
        def _work_once_sent(response):
            response.call_on_close(answered.set)
            return response

        thread = threading.Thread(target=logs.with_request_id(_request_and_deliver), name="password-reset-request",
                                  args=(current_app._get_current_object(), address, locale, audit.request_facts(),
                                        in_flight, answered))
        thread.start()
    except BaseException:
        in_flight.release()
        raise
    return thread


def _request_and_deliver(app, address: str, locale: str | None, facts, in_flight, answered) -> None:
    try:
        answered.wait(ANSWER_WAIT)
        with app.app_context():
            try:
                delivery = request_link(address, locale=locale, facts=facts)
            except Exception:  # nothing may escape a thread: logged, and no link went out
                db.session.rollback()
                log.exception("password reset request could not be handled")
                delivery = None
            finally:
                db.session.remove()
        if delivery is not None:
            deliver(app, delivery)
    finally:
        in_flight.release()


def request_link(address: str, *, locale: str | None, facts=None) -> Delivery | None:
    """A new link for the account whose e-mail is `address`, committed, with its audit event;
    None when no mail goes out (no such account, disabled, unverified address, or its links for
    the hour spent: the caller answers the same either way). `locale`: the mail's language when
    the user has none of their own; `facts`: the requester's (audit.request_facts) when this
    runs outside its request."""
    config = current_settings()
    token = random_token(TOKEN_BYTES)
    token_hash = sha256_hex(token)
    user = login_user.find((address or "").strip().lower())
    if user is None:
        return None
    refusal = None
    email_verified = hold_user(user.id)
    now = utcnow()
    if email_verified is None:
        refusal = "account_disabled"
    elif not email_verified:
        refusal = "email_unverified"
    elif links_spent(user.id, config, now):
        refusal = "rate_limited"
    about = dict(org_id=user.org_id, actor=audit.ANONYMOUS, subject_id=user.id, facts=facts)
    if refusal:
        # The admins see someone asking for links of this account; the requester sees nothing.
        # Once an hour per account and reason: a flood of requests is one row, not one each.
        if not db.session.scalar(_REFUSED_SINCE, {"org_id": user.org_id, "user_id": user.id, "reason": refusal,
                                                  "since": now - timedelta(hours=1)}):
            audit.record("password_reset.refused", **about, details={"reason": refusal})
        db.session.commit()
        return None
    row = PasswordReset(token_hash=token_hash, user_id=user.id, created_at=now,
                        expires_at=now + timedelta(seconds=config.link_ttl))
    db.session.add(row)
    db.session.flush()
    audit.record("password_reset.requested", **about,
                 details={"reset_id": row.id, "expires_at": _iso(row.expires_at)})
    db.session.commit()  # the link must work the moment it arrives
    issuer = current_app.extensions["idp.settings"].issuer
    return Delivery(reset_id=row.id, user_id=user.id, org_id=user.org_id, to=user.email,
                    link=f"{issuer}/password/reset/{token}", locale=user.locale or locale,
                    minutes=config.link_ttl // 60, facts=facts)


def deliver(app, delivery: Delivery) -> bool:
    """Mail the link, outside any request. A failed delivery kills the link and is audited
    (`password_reset.mail_failed`, with the requester's address and browser); nothing here may
    raise: the requester has had their answer. A link no one received does not count against
    the account's links for the hour (`mail_failed_at`), so once the relay is back the user
    just asks again (or the admin invites again). True when the relay took the mail."""
    from idp.notify import NotifyError, current_notifier

    with app.app_context():
        try:
            extra = {"org": delivery.org, "email": delivery.to} if delivery.purpose != PURPOSE else {}
            current_notifier().send_code(delivery.to, delivery.link, delivery.purpose, delivery.locale,
                                         minutes=delivery.minutes, **extra)
            return True
        except NotifyError as exc:
            reason = str(exc)[:200]
        except Exception as exc:  # a notifier's own bug: logged, and the link dies as for a failure
            log.exception("password reset mail %s failed", delivery.reset_id)
            reason = type(exc).__name__
        log.warning("password reset mail %s not sent: %s", delivery.reset_id, reason)
        try:
            now = utcnow()
            db.session.execute(update(PasswordReset).where(PasswordReset.id == delivery.reset_id,
                                                           PasswordReset.used_at.is_(None))
                               .values(expires_at=now, mail_failed_at=now))
            audit.record("password_reset.mail_failed", org_id=delivery.org_id, actor=delivery.actor or audit.ANONYMOUS,
                         actor_id=delivery.actor_id,
                         subject_id=delivery.user_id, facts=delivery.facts,
                         details={"reset_id": delivery.reset_id, "reason": reason,
                                  **({"kind": "invite"} if delivery.purpose != PURPOSE else {})})
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("password reset mail %s: the failure could not be recorded", delivery.reset_id)
        return False


def live_link(token: str) -> LiveLink | None:
    """The link `token` names if it can still be used, else None. Reads outside any transaction
    when none is open (idp.db.read_first): showing the form takes no lock."""
    if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
        return None
    found = db.read_first(_LIVE_LINK, {"token_hash": sha256_hex(token), "now": utcnow()})
    return LiveLink(found.id, found.user_id, found.email, found.kind, found.name) if found is not None else None


def reset(token: str, password: str, *, kind: str = "reset") -> users.Ended:
    """Give the link's user `password`, spending the link, committed. Raises
    users.PasswordRefused (checked first: the link stays usable) or LinkDead, also when the
    link is not of `kind` (a reset link is no invitation, nor the other way round).

    An invitation also marks the address verified, when it was mailed: the person proved they
    read its mailbox (a link printed for the operator to hand over proves nothing of it)."""
    problem = users.password_problem(password)
    if problem:
        raise users.PasswordRefused(problem)
    link = live_link(token)
    if link is None or link.kind != kind:
        raise LinkDead()
    # Hashed before the transaction begins (the link was read outside one): on SQLite it holds the
    # database's write lock, which every other request would wait for through argon2.
    hashed = users.hashed_if_acceptable(password)
    # The user's row, then the link's: the order a sign-out everywhere takes them.
    if hold_user(link.user_id) is None:
        db.session.rollback()
        raise LinkDead()
    now = utcnow()
    spent = db.claim(PasswordReset, [PasswordReset.id == link.reset_id, PasswordReset.used_at.is_(None),
                                     PasswordReset.kind == kind, PasswordReset.expires_at > now],
                     {"used_at": now, "expires_at": now}, commit=False)
    if spent is None:  # used or killed since it was read: a racing post, a new password, a disabling
        db.session.rollback()
        raise LinkDead()
    user = db.session.get(User, link.user_id)
    invited = kind == "invite"
    if invited and user.password_hash is not None and user.last_login_at is not None:
        # Signed in with a first password since the page was read (under the row lock now).
        db.session.rollback()
        raise LinkDead()
    ended = users.set_password(user, password, actor=audit.ANONYMOUS, by="invitation" if invited else "reset_link",
                               hashed=hashed)
    details = {"reset_id": spent.id, "link_created_at": _iso(spent.created_at)}
    if invited:
        # Only a mailed link proves the mailbox: one the operator printed went through their hands.
        details["email_verified_before"] = bool(user.email_verified)
        user.email_verified = bool(user.email_verified or spent.mailed)
        details["email_verified"] = user.email_verified
    audit.record("user.invitation_accepted" if invited else "user.password_reset", org_id=user.org_id,
                 actor=audit.ANONYMOUS, subject_id=user.id, details=details)
    db.session.commit()
    return ended


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
