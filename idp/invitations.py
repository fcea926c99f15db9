"""Inviting a person by e-mail: a link to choose their password, which proves their address too.

    may_invite(user)                 whether the account is one an invitation is for (no password, or
                                     never signed in): the admin page's button, the CLI's check
    invite(user, actor_id=, actor=)  a new invitation link, audited (`user.invited`), in the caller's
                                     transaction: the `Delivery` to mail once the caller committed
                                     (idp.password_reset.deliver), or whose link to print (`idp user
                                     invite --print-link`)
    pending(user_id)                 the expiry of the account's live invitation, if any (the admin page)

An invitation is a password reset link of another kind (PasswordReset.kind "invite": one table,
one token scheme, one "works once", one "dies when the password changes or the account is
disabled", one page: idp.password_reset and idp.login.password_reset_pages). What differs:

- It lives `password_reset.invite_ttl` (a week by default), not `link_ttl`: the person may read
  their mail days later, and they have no password to lose meanwhile.
- An admin or the operator asks for it, by name: no enumeration to hide, so the work is done in
  the request and the admin is told at once whether the relay took the mail.
- It goes to an address not yet verified (an imported user's, a user just added): using it is what
  proves the address (`email_verified`), as a reset link never could. Not a link the operator
  printed to hand over (`idp user invite --print-link`, `mailed=False`): it never saw the mailbox.
- A new invitation kills the account's earlier ones (the last one mailed is the one that works).
- It dies once its user has signed in with a password (a first password the admin also handed
  over): `may_invite`'s rule holds when it is used, not only when it is sent.
- It counts against the account's `password_reset.per_hour` links like a reset link, so that
  neither an admin nor anyone asking for reset links can flood the mailbox.

Using one sets the password through idp.users.set_password (`by="invitation"`: its rules, argon2id,
its sign-out everywhere) and signs nothing in: the person then signs in, with the second factor
enrolment their organization's policy asks for, as after a reset.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from idp import audit, password_reset
from idp.db import db, utcnow
from idp.models import Organization, PasswordReset, User
from idp.security.tokens import random_token, sha256_hex

PURPOSE = "invitation"  # the notifier's wording (idp.notify.base)
INVITE = "invite"       # PasswordReset.kind


class InviteRefused(Exception):
    """No invitation: `reason` is `disabled`, `signed_in` (they have a password and used it: they
    can use "Forgot your password?"), `links_off` ([password_reset] enabled = false) or
    `rate_limited` (the account's links for the hour are spent)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def may_invite(user: User) -> bool:
    """An invitation is for someone who never got in: no password yet (created to be invited,
    imported without one), or one that was never used to sign in (a first password the admin
    could not hand over). Anyone else chooses a new password with "Forgot your password?"."""
    return not user.disabled and (user.password_hash is None or user.last_login_at is None)


def invite(user: User, *, actor_id: int | None = None, actor: str = "",
           mailed: bool = True) -> password_reset.Delivery:
    """A new invitation for `user`, in the caller's transaction (the caller commits, then mails the
    returned Delivery, or prints its link). Raises InviteRefused, with nothing written.

    Holds the user's row first, as a reset link's request does (idp.password_reset): a new
    password or a disabling in the same instant either kills this link or comes before it.

    `mailed` False: the caller prints the link for the operator to hand over (`--print-link`)
    rather than mail it; using that link sets the password but proves no address."""
    config = password_reset.current_settings()
    if not config.enabled:
        raise InviteRefused("links_off")
    if password_reset.hold_user(user.id) is None:
        raise InviteRefused("disabled")
    db.session.refresh(user)  # read again under the lock: a password set or a login since the page
    if not may_invite(user):
        raise InviteRefused("signed_in")
    now = utcnow()
    if password_reset.links_spent(user.id, config, now):
        raise InviteRefused("rate_limited")
    # The earlier invitations die: only the last one mailed works.
    db.session.execute(update(PasswordReset).where(PasswordReset.user_id == user.id, PasswordReset.kind == INVITE,
                                                   PasswordReset.used_at.is_(None), PasswordReset.expires_at > now)
                       .values(expires_at=now))
    token = random_token(password_reset.TOKEN_BYTES)
    row = PasswordReset(token_hash=sha256_hex(token), user_id=user.id, kind=INVITE, created_at=now, mailed=mailed,
                        expires_at=now + timedelta(seconds=config.invite_ttl))
    db.session.add(row)
    db.session.flush()
    by = "admin" if actor_id is not None else actor
    audit.record("user.invited", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"by": by, "reset_id": row.id, **({} if mailed else {"mailed": False}), "expires_at": row.expires_at.isoformat(timespec="seconds")})
    issuer = current_app.extensions["idp.settings"].issuer
    org = db.session.scalar(select(Organization.name).where(Organization.id == user.org_id)) or ""
    return password_reset.Delivery(reset_id=row.id, user_id=user.id, org_id=user.org_id, to=user.email,
                                   link=f"{issuer}/invitation/{token}", locale=user.locale,
                                   minutes=config.invite_ttl // 60, facts=audit.request_facts(),
                                   purpose=PURPOSE, org=org, actor=actor, actor_id=actor_id)


def expires_at(delivery: password_reset.Delivery):
    """When the invitation `delivery` carries stops working (UTC, naive as the database keeps it)."""
    return db.session.scalar(select(PasswordReset.expires_at).where(PasswordReset.id == delivery.reset_id))


def pending(user_id: int):
    """The expiry of the account's live invitation (UTC), or None: the admin page says one is on its way."""
    return db.session.scalar(select(PasswordReset.expires_at).where(
        PasswordReset.user_id == user_id, PasswordReset.kind == INVITE, PasswordReset.used_at.is_(None),
        PasswordReset.expires_at > utcnow()).order_by(PasswordReset.expires_at.desc()).limit(1))
