"""Personal accounts' push recovery: the password, then a 6-digit code sent to the verified e-mail.

`start` checks the password (growing lockouts per user and per address, one generic
answer for unknown account and wrong password: directory.check_password), then creates a
challenge holding only the code's HMAC, valid `code_ttl` seconds, and sends the code
through the notifier. `finish` counts the guess first (at most `code_tries` per code, in
one statement, so parallel guesses cannot exceed it), compares, and spends the challenge
exactly once (the challenge store's conditional UPDATE).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from idp.factors import UserRef, directory

PERSONAL = "personal_recovery"
# A code whose mail the relay did not take: dead, and not counted against `codes_per_hour` (the
# user asks again once the relay is back, as after a reset link that was not sent).
UNSENT = "personal_recovery_unsent"
# But each is an audited SMTP attempt, which whoever holds the password could ask for without end
# while the relay is down: at most this many times `codes_per_hour` attempts per user an hour,
# codes sent or not (docs/recovery.md), then the codes' 429.
ATTEMPTS_PER_CODE = 3
USED = "used"
CODE_DIGITS = 6


class StartRefused(Exception):
    def __init__(self, error: str, status: int, retry_after: int | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.retry_after = error, status, retry_after


class FinishRefused(Exception):
    def __init__(self, error: str, status: int, tries_left: int | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.tries_left = error, status, tries_left


@dataclass(frozen=True)
class Started:
    recovery_id: str
    expires_at: datetime
    sent_to: str


def code_digest(pepper: bytes, user_id: int, code: str) -> str:
    return hmac.new(pepper, f"personal|{user_id}|{code}".encode(), hashlib.sha256).hexdigest()


def start(factor, email: object, password: object, *, remote_addr: str | None, now: datetime, push) -> Started:
    if not isinstance(email, str) or not isinstance(password, str) or not email.strip() or not password:
        raise StartRefused("invalid_request", 400)
    settings = factor.qr_settings
    try:
        user = directory.check_password(email, password, remote_addr=remote_addr, purpose="recover")
    except directory.TooManyAttempts as exc:
        raise StartRefused("too_many_attempts", 429, exc.retry_after) from None
    if user is None:
        raise StartRefused("invalid_credentials", 401)
    if not directory.self_push_recovery_allowed(user):
        # Asked only once the password is right: the answer tells which organization's rule applies.
        raise StartRefused("personal_recovery_disabled", 403)
    if push.store.count(user) == 0:
        # Recovery gives a new phone its own key beside the old one's: it restores push to an
        # account that has it. It never gives a second factor to an account on the strength of
        # its password and mailbox alone (an admin's recovery QR code does that).
        raise StartRefused("no_push_device", 403)
    if not directory.factor_allowed(user, push.name):
        # The organization no longer takes push: the user switches to an allowed factor at the
        # next login (with the phone they still have), no new phone joins the old.
        raise StartRefused("push_not_allowed", 403)
    if directory.push_suspended(user.id):
        # A login reported as not the user's: someone else may hold this password. Their own
        # phone is not registered on its strength until an admin has looked into it.
        raise StartRefused("push_suspended", 403)
    if directory.password_only_proves_the_mailbox(user):
        # The password came from an e-mailed reset link: password + e-mailed code would be the
        # mailbox twice, and a mailbox alone never gives a second factor. A login with a second
        # factor or a recovery code lifts this; an admin's recovery QR code adds a phone anyway.
        raise StartRefused("password_reset_by_email", 403)
    since = now - timedelta(hours=1)
    # Counted and created under the user's lock: parallel starts (each with the right password)
    # must not all pass the count, each code bringing its tries and its mail.
    directory.lock_user(user.id)
    sent = directory.recent_challenge_count(factor.name, user.id, since, kind=PERSONAL)
    unsent = directory.recent_challenge_count(factor.name, user.id, since, kind=UNSENT)
    if sent >= settings.codes_per_hour or sent + unsent >= ATTEMPTS_PER_CODE * settings.codes_per_hour:
        raise StartRefused("too_many_attempts", 429, 3600)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    info = factor.challenges.create(user, ttl=timedelta(seconds=settings.code_ttl), now=now,
                                    payload={"type": PERSONAL, "digest": code_digest(factor.pepper(), user.id, code)})
    directory.commit()  # the code must work the moment it arrives
    details = {"ip": remote_addr, "recovery_id_prefix": info.id[:8]}
    try:
        sent_to = directory.send_code(user, code, "recovery", valid_seconds=settings.code_ttl)
    except directory.CodeNotSent as exc:
        factor.challenges.expire(info.id, now=now)
        factor.challenges.note(info.id, {**info.payload, "type": UNSENT})
        directory.audit("recover.code_not_sent", user, actor=user.email, actor_id=user.id,
                        details={**details, "reason": str(exc)[:200]})
        directory.commit()
        raise StartRefused("code_not_sent", 503) from None
    directory.audit("recover.code_sent", user, actor=user.email, actor_id=user.id, details=details)
    directory.commit()
    return Started(recovery_id=info.id, expires_at=info.expires_at, sent_to=sent_to)


def finish(factor, recovery_id: object, code: object, *, now: datetime, push) -> UserRef:
    """The user whose code this is, the challenge spent (committed by the caller); or FinishRefused.
    The user's row is locked from the spending on (the caller registers the device under it)."""
    info = factor.challenges.get(recovery_id) if isinstance(recovery_id, str) and 0 < len(recovery_id) <= 100 \
        else None
    if info is None or info.payload.get("type") != PERSONAL or info.user_id is None:
        raise FinishRefused("invalid_recovery", 400)
    if info.status != "pending" or info.expires_at <= now:
        raise FinishRefused("code_expired", 410)
    user = directory.get_user(info.user_id)
    if user is None or not directory.self_push_recovery_allowed(user):
        # The organization switched self-service recovery off after the code was sent.
        factor.challenges.expire(info.id, now=now)
        directory.commit()
        raise FinishRefused("personal_recovery_disabled", 403)
    if directory.push_suspended(user.id):  # reported meanwhile (start's rule)
        raise FinishRefused("push_suspended", 403)
    if directory.password_only_proves_the_mailbox(user):  # reset by e-mail meanwhile (start's rule)
        raise FinishRefused("password_reset_by_email", 403)
    tries = directory.count_attempt(f"recover:code:{info.id}")
    limit = factor.qr_settings.code_tries
    if tries > limit:
        factor.challenges.expire(info.id, now=now)
        directory.commit()
        raise FinishRefused("code_expired", 410, 0)
    typed = "".join(code.split()) if isinstance(code, str) else ""
    expected = str(info.payload.get("digest") or "")
    if not (typed.isdigit() and len(typed) == CODE_DIGITS
            and hmac.compare_digest(code_digest(factor.pepper(), info.user_id, typed), expected)):
        # A wrong guess at a code sent to the user's mailbox: theirs, or someone's with their password.
        directory.audit("recover.code_failed", user, actor=user.email, actor_id=user.id,
                        details={"recovery_id_prefix": info.id[:8], "tries_left": max(limit - tries, 0)})
        if tries >= limit:
            factor.challenges.expire(info.id, now=now)
        directory.commit()
        raise FinishRefused("invalid_code", 401, limit - tries)
    # The user's row first, as a login, a reset and a disable lock it before the rows they change
    # (the other order could deadlock on PostgreSQL); then start's rules again, as they stand now.
    if not directory.hold_enabled(user):
        directory.rollback()
        raise FinishRefused("account_disabled", 403)
    no_push = push.store.count(user) == 0
    if no_push or not directory.factor_allowed(user, push.name):
        # The last push device went since the code was sent (an admin's reset after a lost
        # phone), or push is no longer allowed: recovery restores push, it never gives it to an
        # account without it, nor against the organization's choice.
        factor.challenges.expire(info.id, now=now)
        directory.commit()
        raise FinishRefused("no_push_device" if no_push else "push_not_allowed", 403)
    # Spent with the caller's commit, together with the device it registers: a device refused
    # for its key (device_exists) leaves the code for another try.
    if factor.challenges.answer(info.id, USED, now=now, payload={**info.payload, "digest": None},
                                commit=False) is None:
        raise FinishRefused("code_expired", 410)
    return user
