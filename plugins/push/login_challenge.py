"""Login challenges: a number to match, the context the app shows, and what an answer means.

A challenge is a `factor_challenges` row of type "login" bound to the user and the login
transaction. Its payload holds the number (never sent to the device), the digits and the
context; the answer (exactly once, the store's conditional UPDATE) sets its status to
approved / denied / fraud and records which device answered.
"""
from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l

from idp.factors import AttemptContext, Denied, Pending, Rejected, UserRef, Verified, display_text, storable

from idp_plugins.push.protocol import unix

LOGIN = "login"
APPROVED, DENIED, FRAUD = "approved", "denied", "fraud"
DECISIONS = ("approve", "deny", "fraud")

# What the login page says of a denial the user did not mean as one (the core words the rest).
DENIAL_MESSAGES = {
    "wrong_number": _l("The number typed on your phone did not match the one shown here, so the request "
                       "was refused. Use another method, or start the sign-in again."),
}


def new_number(digits: int) -> str:
    return f"{secrets.randbelow(10 ** digits):0{digits}d}"


def context_of(ctx: AttemptContext) -> dict:
    """What the phone shows before the user decides. The User-Agent is the signing-in browser's
    own, possibly an attacker's who knows the password: display text only, so that no escape
    sequence reaches a terminal or a screen to redraw the lines around it."""
    return {"application": display_text(ctx.client_name or ""), "ip": ctx.remote_addr or "",
            "user_agent": display_text((ctx.user_agent or "")[:300]), "time": unix(ctx.now)}


def superseded(challenges, user: UserRef, ctx: AttemptContext) -> list[str]:
    """Pending challenges of the same login, which a new one replaces."""
    if not ctx.transaction_id:
        return []
    return [old.id for old in challenges.pending(user=user, now=ctx.now)
            if old.transaction_id == ctx.transaction_id and old.payload.get("type") == LOGIN]


def cancel(challenges, challenge_ids, now: datetime) -> None:
    """Cancel the (superseded) challenges still pending among `challenge_ids`; the caller commits.
    One answered since it was read stays as answered: the caller's checks that follow see it."""
    for challenge_id in challenge_ids:
        challenges.expire(challenge_id, now=now)


def create(challenges, user: UserRef, ctx: AttemptContext, *, digits: int, ttl: int):
    """Store a new challenge; the caller commits."""
    payload = {"type": LOGIN, "number": new_number(digits), "digits": digits, "context": context_of(ctx)}
    return challenges.create(user, ttl=timedelta(seconds=ttl), transaction_id=ctx.transaction_id,
                             payload=payload, now=ctx.now)


def public_view(info) -> dict:
    """What a device may see of a challenge: everything but the number."""
    return {"id": info.id, "created_at": unix(info.created_at), "expires_at": unix(info.expires_at),
            "digits": info.payload.get("digits"), "context": info.payload.get("context") or {}}


def decide(info, decision: str, number) -> tuple[str, str]:
    """(status, reason) for a device's decision. An approval with the wrong number is a denial,
    whatever the number holds (a lone surrogate, which no UTF-8 encodes, included)."""
    if decision == "fraud":
        return FRAUD, "fraud"
    if decision == "deny":
        return DENIED, "denied"
    expected = str(info.payload.get("number") or "")
    if isinstance(number, str) and storable(number) and expected \
            and hmac.compare_digest(number.strip().encode(), expected.encode()):
        return APPROVED, "approved"
    return DENIED, "wrong_number"


def recent(info, now: datetime, window: int) -> bool:
    """Created within the last `window` seconds (`factors.push.window`): a fraud report on such a
    challenge counts even once it is closed (superseded, expired, answered), since the user may
    take longer to decide than the request lived. An older one is history, not a live attack."""
    return info.created_at >= now - timedelta(seconds=window)


def outcome(challenges, store, user: UserRef, state: dict, now: datetime, transaction_id: str | None, amr):
    """The pipeline's view of the challenge in `state` (verify and poll share it)."""
    challenge_id = state.get("challenge_id") if isinstance(state, dict) else None
    if not isinstance(challenge_id, str) or not challenge_id:
        return Rejected("invalid_state")
    info = challenges.get(challenge_id)
    if info is None or info.user_id != user.id or info.payload.get("type") != LOGIN \
            or (transaction_id and info.transaction_id and info.transaction_id != transaction_id):
        return Rejected("invalid_state")
    if info.status == "pending":
        if info.expires_at <= now:
            return Rejected("expired", counts_as_failure=False)
        return Pending(retry_after=0.5)
    if info.status == APPROVED:
        device_id = info.payload.get("device_credential_id")
        if not isinstance(device_id, int) or store.get(user, device_id) is None:
            return Rejected("expired", counts_as_failure=False)  # the device was revoked meanwhile
        return Verified(credential_id=device_id, amr=tuple(amr), facts={"device": info.payload.get("device_name")})
    if info.status == FRAUD:
        return Denied("fraud", fraud=True)
    if info.status == DENIED:
        reason = str(info.payload.get("reason") or "denied")
        return Denied(reason, message=DENIAL_MESSAGES.get(reason))
    return Rejected("expired", counts_as_failure=False)
