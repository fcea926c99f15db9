"""A user's account: creating one, a new password, disabling, the role in the organization, signing
out everywhere.

Three doors lead here (the `idp user` commands, the admin console, the user's own security
page) and all of them go through these functions, so that each change is checked, audited
and followed by the same sign-out everywhere. A new password or a disabled account leaves no
way in that the old state opened: the user's browser sessions end (the one that asked for a new
password included) and every access and refresh token of theirs is revoked, so an application
holding one must sign the user in again (`sign_out_everywhere`). Disabling also has each factor
revoke what it handed out to let the user back in later (`Factor.on_account_disabled`: an admin's
recovery QR codes), which enabling the account does not bring back.

Deleting a user (`delete`: the right to erasure of someone who left) signs them out everywhere
the same way, their applications told through back-channel logout, then removes the account and
everything keyed by it in the same transaction; only the audit log keeps naming them, until its
retention ends (docs/operations.md, "Deleting a user").

A role change ends nothing (the admin pages read the role on every request), but an
organization is never left without an admin by one: its last admin cannot be made a user.

Everything happens in the caller's transaction; the caller commits.
"""
from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from idp import audit, lockout, session_idle, token_revocation
from idp.db import db, utcnow
from idp.models import (AuthorizationCode, ConsentGrant, Credential, DeviceAuthorization, FactorChallenge,
                        LoginTransaction, Organization, PasswordReset, SessionClient, Token, User, UserSession)
from idp.oidc import backchannel
from idp.template_i18n import plural_text

MIN_PASSWORD_LENGTH = 8      # NIST SP 800-63B 5.1.1.1
MAX_PASSWORD_LENGTH = 1024   # long passphrases welcome; a megabyte is not a password


ROLES = ("user", "admin")


class AccountRefused(ValueError):
    """Bad input for an account; the message says what, for people (shown as is)."""


class PasswordRefused(AccountRefused):
    """The new password breaks a rule."""


class LastAdmin(AccountRefused):
    """The change would leave the organization without an admin."""


class UserGone(LookupError):
    """The user was deleted meanwhile: by another admin or the operator deleting them at the same
    moment (`delete`, which found the row gone once the first deletion let it go)."""


class EmailTaken(AccountRefused):
    """The address is some user's already, in this organization or in another (the e-mail address
    is the login name, unique across every organization). The message says so, for the operator
    (`idp user add`); an organization's admin is told less (idp.admin.accounts.new_user)."""


_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_NAME_LENGTH = 200


def normalised_email(raw: str) -> str:
    """`raw` stripped and lower-cased; AccountRefused unless it looks deliverable (the login name)."""
    email = (raw or "").strip().lower()
    local, at, domain = email.rpartition("@")
    labels = domain.split(".")
    if (not at or not local or len(local) > 64 or len(email) > 254 or not _EMAIL_LOCAL.fullmatch(local)
            or local.startswith(".") or local.endswith(".") or ".." in local
            or len(labels) < 2 or not all(_DNS_LABEL.fullmatch(label) for label in labels)):
        raise AccountRefused(_("Invalid e-mail address: %(email)s", email=repr((raw or "").strip())))
    return email


def hashed_if_acceptable(password: str) -> str | None:
    """The argon2 hash of a password `password_problem` accepts, None for one it refuses (the
    change that follows refuses it with its reason), for a caller that hashes before its
    transaction begins (`create` and `set_password` take it as `hashed=`): on SQLite a
    transaction holds the database's write lock, and every request of every server would wait
    through the hash. The caller must hold no transaction now."""
    if password_problem(password):
        return None
    return current_app.extensions["idp.passwords"].hash(password)


def create(org_id: int, email: str, password: str | None, *, name: str = "", role: str = "user",
           actor_id: int | None = None, actor: str = "", hashed: str | None = None) -> User:
    """A new user of the organization (checked first: e-mail, name, password, e-mail not taken),
    audited as `user.created`. Raises AccountRefused.

    `password` None: a user to invite (idp.invitations), with no password and an address not yet
    verified; the invitation's link gives them both.

    `hashed`: the password's argon2 hash, computed by a caller whose own reads began a
    transaction (`idp user add`, which looks the organization up first): as for set_password."""
    from idp.security.tokens import random_token

    email = normalised_email(email)
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise AccountRefused(plural_text("The name must be at most %(num)s printable character.",
                                         "The name must be at most %(num)s printable characters.", MAX_NAME_LENGTH))
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    problem = password_problem(password) if password is not None else None
    if problem:
        raise PasswordRefused(problem)
    # Hashed before the look-up begins a transaction: on SQLite it holds the database's write
    # lock, which every other request would wait for through argon2.
    password_hash = (hashed or current_app.extensions["idp.passwords"].hash(password)) if password is not None else None
    taken = EmailTaken(_("A user with the e-mail address %(email)s already exists.", email=email))
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise taken
    user = User(org_id=org_id, email=email, name=name, role=role, public_id=random_token(24),
                email_verified=password is not None, password_hash=password_hash)
    try:
        with db.session.begin_nested():  # the same address added at the same moment (PostgreSQL)
            db.session.add(user)
            db.session.flush()
    except IntegrityError:
        raise taken from None
    audit.record("user.created", org_id=org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"email": email, "role": role, **({} if password is not None else {"password": "invitation"})})
    return user


@dataclass(frozen=True)
class Ended:
    """What a sign-out everywhere ended: browser sessions and tokens (an access token with its
    refresh token counts once)."""
    sessions: int
    tokens: int

    def as_details(self) -> dict:
        return {"sessions_ended": self.sessions, "tokens_revoked": self.tokens}


def password_problem(password: str) -> str | None:
    """Why `password` cannot be a password, or None: a sentence in the request's language (in
    English for the `idp` command)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return plural_text("The password must have at least %(num)s character.",
                           "The password must have at least %(num)s characters.", MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        return plural_text("The password must have at most %(num)s character.",
                           "The password must have at most %(num)s characters.", MAX_PASSWORD_LENGTH)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in password):
        # A control character cannot be typed into the login form, nor a lone surrogate encoded
        # (NUL cannot even be stored). Any other character is welcome: a non-breaking space (a
        # French keyboard types one before ":"), an ideographic space, an emoji sequence.
        return _("The password must not contain control characters.")
    if not password.strip():
        return _("The password must not be only spaces.")
    return None


def sign_out_everywhere(user_id: int) -> Ended:
    """End everything a login of the user's made before now opened, wherever it is presented.

    The stamp comes first: it takes the user's row lock, which a login finishing its last step
    takes first too (idp.login.pipeline.finish), so the two cannot interleave: a login that
    finished first has its session and code revoked below, one that finishes after finds its
    transaction expired (or, a login whose password step finishes it and names its user only then,
    finds the stamp below changed since it read the user: idp.login.user.signed_out_since_password). Then the sessions end, the codes and tokens are revoked (a code exchange
    in flight included: idp.token_revocation), the logins and factor challenges in progress
    (push requests, activation and recovery codes) and the password reset links not yet used
    expire. A token a refresh stores in the same instant, past the UPDATE below, is dead anyway:
    it carries its login's auth_time, older than the stamp (tokens are refused at use when
    `auth_time < tokens_valid_after`). A reset link mailed in that instant cannot slip past either: its
    request holds the same row lock (idp.password_reset).
    """
    now = utcnow()
    db.session.execute(update(User).where(User.id == user_id).values(tokens_valid_after=int(time.time())))
    # Idle sessions are revoked too (session_idle.unended_where), but neither told of nor counted:
    # to the user and the clients they had ended already, as expired ones have.
    ended = db.session.execute(
        update(UserSession).where(UserSession.user_id == user_id, *session_idle.unended_where(now))
        .values(revoked_at=now)
        .returning(UserSession.sid, UserSession.last_used_at)).all()
    ended_sids = [sid for sid, last_used_at in ended if not session_idle.is_idle(last_used_at, now)]
    backchannel.sessions_ended(user_id, ended_sids)
    token_revocation.revoke_codes(AuthorizationCode.user_id == user_id)
    revoked_tokens = db.session.execute(
        update(Token).where(Token.user_id == user_id, Token.revoked_at.is_(None))
        .values(revoked_at=int(time.time()))).rowcount
    for table in (LoginTransaction, FactorChallenge, PasswordReset):
        db.session.execute(update(table).where(table.user_id == user_id, table.expires_at > now).values(expires_at=now))
    return Ended(len(ended_sids), revoked_tokens)


def set_password(user: User, password: str, *, actor_id: int | None = None, actor: str = "",
                 by: str | None = None, second_factor_proven: bool = True, hashed: str | None = None) -> Ended:
    """Give `user` a new password (checked first) and sign them out everywhere, the browser that
    asked included (its session could be a thief's copy too). Raises PasswordRefused.

    A new password also starts a new budget of guesses on the account: the failures counted
    against the old one are cleared, so that a lockout someone's guesses put on the account
    no longer keeps its owner out once a reset link or an admin gave them a new password
    (idp.lockout.PasswordGuess; the addresses keep their own counts).

    The event's `by` says which door: `self`, `admin`, else `actor` (`cli`), unless given (a
    reset link's holder is anonymous: `by="reset_link"`, an invitation's `by="invitation"`,
    idp.password_reset).

    `second_factor_proven`: False for the user's own change from a session on the password alone,
    which proves no more than the reset link did (User.password_reset_at stays).

    `hashed`: the password's argon2 hash, computed by a caller before its transaction began (a
    reset link's: idp.password_reset.reset). On SQLite a transaction holds the database's write
    lock, and every other request would wait through the hash."""
    problem = password_problem(password)
    if problem:
        raise PasswordRefused(problem)
    user.password_hash = hashed or current_app.extensions["idp.passwords"].hash(password)
    # A reset link's password proves the mailbox alone (see User.password_reset_at); an admin,
    # the CLI, or the user signed in with a second factor prove more.
    if by in ("reset_link", "invitation"):
        user.password_reset_at = utcnow()
    elif second_factor_proven:
        user.password_reset_at = None
    db.session.add(user)
    ended = sign_out_everywhere(user.id)
    lockout.succeed([lockout.PasswordGuess.of(user.email, None).account])
    audit.record("user.password_changed", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"by": by or _door(user, actor_id, actor), **ended.as_details()})
    return ended


def sign_out(user: User, *, actor_id: int | None = None, actor: str = "") -> Ended:
    """Sign `user` out everywhere on request, nothing else changed (a stolen laptop, a session
    left open somewhere): `sign_out_everywhere`, audited as `user.signed_out_everywhere` with
    its `by` (`self`, `admin` or `cli`, as for a new password). A disabled user is signed out
    again: nothing is left to end, and the event says so."""
    ended = sign_out_everywhere(user.id)
    audit.record("user.signed_out_everywhere", org_id=user.org_id, actor_id=actor_id, actor=actor,
                 subject_id=user.id, details={"by": _door(user, actor_id, actor), **ended.as_details()})
    return ended


def reset_factors(user: User, *, actor_id: int | None = None, actor: str = "") -> list:
    """Revoke every second factor and recovery credential of `user` (a lost phone): the admin's
    "Reset second factors" on a member's page, `idp user reset-factors` for anyone (another
    admin, whom the admin pages leave to the operator: idp.admin.access.peer_admin_refused).

    The credentials revoked, [] when none was left (no event then). With them go the grace
    period (`withdraw_grace`: no login on the password alone) and the sessions their logins
    proved (idp.sessions.end_proved_by); audited as `factor.reset` with its `by` (`admin`, `cli`).
    A user required to use 2FA then enrols again at their next login (decide: must_enrol)."""
    from idp.factors.directory import lock_user
    from idp.factors.registry import current_registry
    from idp.policy.settings import withdraw_grace
    from idp.sessions import end_proved_by

    registry = current_registry()
    # The user's row before the credentials' rows, as a login takes them (it holds the user's row,
    # then spends a code or moves a counter): in the other order, a reset as the user typed a code
    # deadlocked on PostgreSQL (tests/concurrency/test_recovery_qr_races.py).
    lock_user(user.id)
    revoked = [c for c in (registry.remove_credential(user.id, c.id) for c in registry.store.list(user.id)) if c]
    if not revoked:
        return []
    withdraw_grace(user.id)
    audit.record("factor.reset", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"revoked": len(revoked), "factors": sorted({c.factor for c in revoked}),
                          "by": _door(user, actor_id, actor)})
    end_proved_by(user, [c.id for c in revoked], actor_id=actor_id, actor=actor)
    return revoked


def _door(user: User, actor_id: int | None, actor: str) -> str:
    """Which door a change to `user` came through, for its event's `by`: `self`, `admin`, else
    the actor's name (`cli`)."""
    return "self" if actor_id == user.id else "admin" if actor_id is not None else actor


def set_disabled(user: User, disabled: bool, *, actor_id: int | None = None, actor: str = "") -> Ended | None:
    """Disable (sign out everywhere; no new login; the factors revoke what would let the user back
    in later: `Factor.on_account_disabled`) or enable `user`. None when nothing changes:
    no event for a no-op. Raises LastAdmin rather than disable an organization's last enabled
    admin (two admins disabling each other at once: the organization's row decides)."""
    if disabled:
        _keep_an_admin(user)
    # One conditional UPDATE: of two admins disabling at once, one changes it and writes the event.
    changed = db.session.execute(update(User).where(User.id == user.id, User.disabled.is_(not disabled))
                                 .values(disabled=disabled)).rowcount
    if not changed:
        return None
    ended = sign_out_everywhere(user.id) if disabled else Ended(0, 0)
    audit.record("user.disabled" if disabled else "user.enabled", org_id=user.org_id, actor_id=actor_id,
                 actor=actor, subject_id=user.id, details=ended.as_details() if disabled else {})
    if disabled:
        # What an admin handed out to let the user back in (a recovery QR code) is revoked by its
        # factor, each with its own event: enabling the account again must not revive a code
        # issued before a suspension (after a push fraud report, say).
        from idp.factors.directory import user_ref
        from idp.factors.registry import current_registry

        current_registry().account_disabled(user_ref(user), actor=actor, actor_id=actor_id)
    return ended


def delete(user: User, *, actor_id: int | None = None, actor: str = "") -> Ended:
    """Delete `user` and everything that is theirs, in the caller's transaction (all or nothing):
    what `sign_out_everywhere` ends (their applications told by back-channel logout as for any
    sign-out everywhere; `Ended` counts what was live), then every row keyed by the user, and
    the failure counters keyed by them. Audited as `user.deleted` (`email`, `public_id`, `role`
    and the counts; its `by`: `admin` or `cli`): the audit log keeps its events about them until
    its retention ends. Raises LastAdmin rather than delete an organization's last enabled admin,
    UserGone when another deletion of the user committed while this one waited.

    The order is sign_out_everywhere's and a login's: the organization's row (`_keep_an_admin`),
    then the user's (the stamp), then the rows that point at it. A login that finishes first is
    ended here like any other session; one that finishes after finds no user to hold
    (idp.login.user.hold_for_sign_in) and ends on the expired page. The user's row goes last:
    its DELETE waits for a refresh or a code exchange that stored a token of theirs meanwhile
    (the foreign key's share of the row), whose token the passes before it then removed; an
    exchange that comes later finds its code gone and stores nothing (idp.token_revocation).

    Every foreign key to users.id cascades (and SQLite enforces them: idp.db turns
    `foreign_keys` on); the rows are deleted here all the same, so that the counts are known and
    a connection without that pragma cannot leave orphans. The `sub` (public_id) and the row
    id are never given out again (User.public_id is random; the users table never reuses an id:
    idp.models.directory)."""
    user_id, email, public_id, org_id = user.id, user.email, user.public_id, user.org_id
    # The role as read under the organization's lock, which every deletion takes first: none when
    # a deletion of the same user committed while this one waited (UserGone: not deleted, nor
    # audited, twice).
    role = _keep_an_admin(user)
    if role is None:
        raise UserGone(email)
    ended = sign_out_everywhere(user_id)
    removed = {}
    # Children before their parents: a session's clients, then the session; a credential's
    # challenges (a push request, a recovery QR code's), then the credential.
    for name, table, where in (
            ("session_clients", SessionClient, SessionClient.user_id == user_id),
            ("sessions", UserSession, UserSession.user_id == user_id),
            ("factor_challenges", FactorChallenge,
             (FactorChallenge.user_id == user_id)
             | FactorChallenge.credential_id.in_(select(Credential.id).where(Credential.user_id == user_id))),
            ("credentials", Credential, Credential.user_id == user_id),
            ("logins", LoginTransaction, LoginTransaction.user_id == user_id),
            ("codes", AuthorizationCode, AuthorizationCode.user_id == user_id),
            ("consents", ConsentGrant, ConsentGrant.user_id == user_id),
            ("password_resets", PasswordReset, PasswordReset.user_id == user_id),
            ("device_authorizations", DeviceAuthorization, DeviceAuthorization.user_id == user_id)):
        removed[name] = db.session.execute(sql_delete(table).where(where)).rowcount
    # Repeated until none is left: a refresh rotating one of them meanwhile commits its successor
    # where one DELETE's snapshot cannot see it (idp.token_revocation).
    removed["tokens"] = token_revocation.until_none_left(sql_delete(Token).where(Token.user_id == user_id))
    # The lockout counters keyed by the person: the second factor's (idp.login.steps.factor_step),
    # the password's (by their address: an unknown address locks as a known one does, so this
    # gives nothing away) and, for an admin, the "address in use" answers (idp.admin.accounts).
    lockout.succeed([f"factor:user:{user_id}", lockout.PasswordGuess.of(email, None).account,
                     f"factor:admin-taken-email:{user_id}"])
    audit.record("user.deleted", org_id=org_id, actor_id=actor_id, actor=actor, subject_id=user_id,
                 details={"email": email, "public_id": public_id, "role": role, "by": _door(user, actor_id, actor),
                          **ended.as_details(), "credentials_deleted": removed["credentials"]})
    db.session.execute(sql_delete(User).where(User.id == user_id))
    if user in db.session:
        db.session.expunge(user)  # its row is gone: nothing may flush or refresh it
    return ended


def set_role(user: User, role: str, *, actor_id: int | None = None, actor: str = "") -> bool:
    """Make `user` an admin of their organization or a plain user; False when it already is.

    Raises LastAdmin rather than demote an organization's only enabled admin (`_keep_an_admin`:
    two admins demoting each other at once cannot both pass that check)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    current = db.session.scalar(select(User.role).where(User.id == user.id))
    if current == role:
        return False
    if current == "admin":
        _keep_an_admin(user)
    db.session.execute(update(User).where(User.id == user.id).values(role=role))
    audit.record("user.role_changed", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"from": current, "to": role})
    if role == "admin":
        # An administrator's recovery QR codes are the operator's (docs/policy.md): what another
        # admin issued to the member is revoked by its factor, each with its own event (an audit
        # found one outliving the promotion, out of its issuer's sight and still redeemable).
        from idp.factors.directory import user_ref
        from idp.factors.registry import current_registry

        current_registry().account_promoted(user_ref(user), actor=actor, actor_id=actor_id)
    return True


def lock_organization(org_id: int) -> None:
    """Hold the organization's row till the caller's transaction ends: what `_keep_an_admin`
    counts under, taken before any user's row (a caller that locks the user's row first, the
    admin pages' peer-admin check, takes this first: in the other order, an admin page and an
    `idp` command disabling or deleting one member at once each held what the other waited for).

    FOR NO KEY UPDATE, as the organization's settings take it: these changes are counted one after
    the other all the same, while a foreign key's check (FOR KEY SHARE: a transaction holding the
    member's row that updates it a second time, a phone registering, checks the row's
    organization) does not wait for it; FOR UPDATE, that check and this wait deadlocked."""
    db.session.execute(select(Organization.id).where(Organization.id == org_id).with_for_update(key_share=True))


def _keep_an_admin(user: User) -> str | None:
    """LastAdmin when `user` is an admin and the organization keeps no other enabled admin.
    Locks the organization's row first (till the caller's transaction ends), so that two such
    changes at once are counted one after the other; the role is read under that lock too (an
    admin promoted a moment ago by another request counts as one). Returns that role: None when
    the user is no longer there (deleted meanwhile)."""
    lock_organization(user.org_id)
    role = db.session.scalar(select(User.role).where(User.id == user.id))
    if role != "admin":
        return role
    others = db.session.scalar(select(func.count()).select_from(User).where(
        User.org_id == user.org_id, User.role == "admin", User.disabled.is_(False), User.id != user.id))
    if not others:
        raise LastAdmin(_("%(email)s is the organization's only administrator: make someone else an "
                          "administrator first.", email=user.email))
    return role
