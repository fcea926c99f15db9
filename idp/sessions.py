"""Where a user is signed in: their live browser sessions, and ending one of them.

Shown on the user's security page (with a button to end each other session) and on the
admin's user page. Ending every session at once, with every token, is idp.users.sign_out.

A session is named in pages and forms by its `sid`: the public id the ID tokens carry, never
the row's id (the hash of the cookie value).

Ending one session from these pages ends what was obtained through it too. Every authorization code records
the session that signed its login in (`AuthorizationCode.session_id`, the `sid`), and every
token records its code (`Token.code_id`, kept through refresh rotation; the purge keeps a
redeemed code while a live token points at it): so the session's codes are revoked (none
can be redeemed any more) and the tokens issued from them too, whichever application holds
them (a refresh or a code exchange in flight included: idp.token_revocation). Other sessions
and their tokens stay. A sign-out in the browser itself (/logout, idp.login.session.end_current)
withdraws the same but for the refresh tokens: those were granted `offline_access`, which is
access "even when the End-User is not logged in" (OIDC Core 11), but no longer than the second
factor their login proved: its withdrawal revokes them (`end_proved_by`).

Everything happens in the caller's transaction; the caller commits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from idp import audit, session_idle, token_revocation, user_agent
from idp.db import db, utcnow
from idp.models import AuthorizationCode, Token, User, UserSession
from idp.oidc import backchannel

# What a sid looks like (idp.security.tokens.random_token): anything else names no session,
# and is answered without a look-up.
_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class LiveSession:
    sid: str
    user_agent: str | None
    ip: str | None
    signed_in_at: datetime
    expires_at: datetime
    # When a request last relied on it, to the minute (idp.session_idle: the stamp is coarse).
    last_used_at: datetime

    @property
    def browser(self) -> str:
        """The browser, told as "Firefox on Linux" in the request's language (idp.user_agent.describe)."""
        return user_agent.describe(self.user_agent)


def live(user_id: int) -> list[LiveSession]:
    """The user's sessions neither ended nor expired (nor idle too long: idp.session_idle), the latest first."""
    rows = db.session.execute(
        select(UserSession.sid, UserSession.user_agent, UserSession.ip, UserSession.created_at,
               UserSession.expires_at, UserSession.last_used_at)
        .where(UserSession.user_id == user_id, *session_idle.live_where(utcnow()))
        .order_by(UserSession.created_at.desc(), UserSession.sid))
    return [LiveSession(*row) for row in rows]


def is_live(sid: str, *, user_id: int | None = None, hold: bool = True) -> bool:
    """Whether the session `sid` (of `user_id`, when given) is neither ended nor expired (nor idle
    too long). With
    `hold`, its row is then locked FOR SHARE for the rest of the transaction (PostgreSQL; SQLite's
    write lock is already held): an end of that session (`end`, a sign-out) either came first, and
    is seen here, or waits for what this transaction does in its name (a login's code:
    idp.login.session.hold_live; a push activation: idp.factors.directory.session_live)."""
    query = select(UserSession.sid).where(UserSession.sid == sid, *session_idle.live_where(utcnow()))
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    return db.session.execute(query.with_for_update(read=True) if hold else query).first() is not None


def _proved_any(withdrawn: set, proved) -> bool:
    """Whether a login's proven credential ids (a JSON list, or None) hold one of `withdrawn`."""
    return bool(withdrawn.intersection(i for i in (proved or ()) if isinstance(i, int)))


def end(user: User, sid: str, *, actor_id: int | None, actor: str, by: str) -> int | None:
    """End the live session `sid` of `user`, its codes and the tokens obtained
    through it (module docstring); audited as `session.ended` (`by`: `self`, `admin`...).
    Returns how many tokens were revoked, or None when `user` has no session with this sid that
    has not ended (another user's, ended already, expired, made up): then nothing changes. An
    idle one is ended (session_idle.unended_where), and its tokens with it."""
    if not _SID.fullmatch(sid or ""):
        return None
    now = utcnow()
    ended = db.session.execute(
        update(UserSession).where(UserSession.user_id == user.id, UserSession.sid == sid,
                                  *session_idle.unended_where(now))
        .values(revoked_at=now).returning(UserSession.created_at)).first()
    if ended is None:
        return None
    revoked = withdraw_grants(user.id, sid)
    backchannel.sessions_ended(user.id, [sid])
    audit.record("session.ended", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"by": by, "sid": sid, "signed_in_at": ended.created_at.isoformat(timespec="seconds"),
                          "tokens_revoked": revoked})
    return revoked


def end_proved_by(user: User, credential_ids, *, actor_id: int | None, actor: str,
                  keep_sid: str | None = None) -> int:
    """End the user's live sessions whose login proved one of `credential_ids` (a second factor
    revoked, reset, removed or suspected cloned), all but `keep_sid`, each as `end` does (its
    codes and tokens, `session.ended` with `by` "factor_withdrawn"): what a withdrawn factor
    proved is withdrawn too, so a session made with a lost phone neither stays signed in nor
    answers a login that asks for a second factor. The refresh tokens of such logins whose
    session has ended already (a sign-out leaves them: `offline_access`) are revoked too, by
    family (`_revoke_families_proved_by`), but those of `keep_sid`. Returns how many sessions ended.

    What was begun in the withdrawn factor's name goes with it: the user's logins in progress
    that one of them advanced (stopped at the consent page, say) expire, and so do the user's
    challenges that no other login in progress holds: a push activation code or a recovery by
    e-mail begun in a session the lost phone opened would otherwise register a phone after
    the session ended. (A login's own challenges end with it; a phone's pending push requests
    with the phone: its plugin's `on_removed`; an enrolment on the security page needs a live
    session to finish, and stays.) The user's row is locked first, as a login
    finishing its last step locks it (idp.login.pipeline.finish): that login either finished
    before, and its session is ended here, or finds its transaction expired.

    The few live sessions of one user are read and matched here rather than in SQL: the ids
    are a JSON list, queried differently by SQLite and PostgreSQL."""
    from idp.factors import challenges
    from idp.factors.directory import lock_user
    from idp.login import transaction

    withdrawn = set(credential_ids)
    lock_user(user.id)
    expired_logins = transaction.expire_advanced_by(user.id, withdrawn)
    challenges.expire_for_user(user.id, of_logins=expired_logins)
    rows = db.session.execute(  # idle ones too: session_idle.unended_where
        select(UserSession.sid, UserSession.credential_ids)
        .where(UserSession.user_id == user.id, *session_idle.unended_where(utcnow())))
    ended = [sid for sid, proved in rows if sid != keep_sid and _proved_any(withdrawn, proved)]
    for sid in ended:
        end(user, sid, actor_id=actor_id, actor=actor, by="factor_withdrawn")
    _revoke_families_proved_by(user, withdrawn, keep_sid=keep_sid, actor_id=actor_id, actor=actor)
    return len(ended)


def _revoke_families_proved_by(user: User, withdrawn: set, *, keep_sid: str | None, actor_id: int | None,
                               actor: str) -> int:
    """Revoke the user's token families whose login proved one of the `withdrawn` credentials,
    but those obtained through the session `keep_sid`, which stays (`end_proved_by`): the
    refresh tokens (`offline_access`) of sessions that have already ended, which a sign-out
    leaves (module docstring), stand on that proof as much as a live session does, and an
    application holding one of a lost phone's logins must sign the user in again. A family
    stands on the proof its login made, whatever the user holds now (another factor still set
    up saves none of them). Audited as one `token.families_revoked` (`by` "factor_withdrawn",
    the clients, how many families and tokens); returns how many tokens were revoked.

    The families are read and matched here, as the sessions are: `credential_ids` is a JSON list,
    queried differently by SQLite and PostgreSQL. Only the live head of each family is read; the
    revocation is by family (token_revocation.revoke), so a successor a refresh is storing at
    this moment goes with it. The codes of such logins are revoked first (`_revoke_codes_proved_by`),
    so that one being exchanged at this moment stores its tokens before the read below, or none."""
    _revoke_codes_proved_by(user, withdrawn, keep_sid=keep_sid)
    rows = db.session.execute(
        select(Token.family_id, Token.client_id, Token.credential_ids, AuthorizationCode.session_id)
        .outerjoin(AuthorizationCode, AuthorizationCode.id == Token.code_id)
        .where(Token.user_id == user.id, Token.revoked_at.is_(None), Token.rotated_at.is_(None),
               Token.family_id.is_not(None)))
    families, clients = set(), set()
    for family_id, client_id, proved, session_id in rows:
        if keep_sid is not None and session_id == keep_sid:
            continue
        if _proved_any(withdrawn, proved):
            families.add(family_id)
            clients.add(client_id)
    if not families:
        return 0
    revoked = token_revocation.revoke(Token.user_id == user.id, Token.family_id.in_(sorted(families)))
    audit.record("token.families_revoked", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"by": "factor_withdrawn", "client_ids": sorted(clients), "families": len(families),
                          "tokens_revoked": revoked})
    return revoked


def _revoke_codes_proved_by(user: User, withdrawn: set, *, keep_sid: str | None) -> int:
    """Mark revoked the user's codes whose login proved one of the `withdrawn` credentials and
    that may still be redeemed or be under exchange (token_revocation.revoke_codes), but those of
    `keep_sid`: the codes first, as every revocation takes them (idp.token_revocation, "Codes").
    The sessions ended here have had theirs revoked (`end`), and a sign-out revokes its own; this
    is for the code of a session that is neither, having expired between the code and its
    exchange: its exchange, its code claimed and its tokens not yet stored when the token
    families were read, would have stored a family no one revoked. Returns how many were marked."""
    rows = db.session.execute(
        select(AuthorizationCode.id, AuthorizationCode.credential_ids, AuthorizationCode.session_id)
        .where(AuthorizationCode.user_id == user.id, AuthorizationCode.revoked_at.is_(None),
               AuthorizationCode.expires_at > utcnow() - token_revocation.EXCHANGE_IN_FLIGHT))
    doomed = [code_id for code_id, proved, session_id in rows
              if not (keep_sid is not None and session_id == keep_sid)
              and _proved_any(withdrawn, proved)]
    return token_revocation.revoke_codes(AuthorizationCode.id.in_(doomed)) if doomed else 0


def withdraw_grants(user_id: int, sid: str, *, offline_access_too: bool = True) -> int:
    """Revoke what the session `sid` obtained (module docstring): its codes, unredeemed ones and
    device approvals not yet polled included, and the tokens issued from them; with
    `offline_access_too=False`, all but the refresh tokens (and their access tokens), which only
    `offline_access` grants. Returns how many tokens were revoked."""
    of_this_session = (AuthorizationCode.user_id == user_id, AuthorizationCode.session_id == sid)
    token_revocation.revoke_codes(*of_this_session)
    tokens = [Token.user_id == user_id, Token.code_id.in_(select(AuthorizationCode.id).where(*of_this_session))]
    if not offline_access_too:
        tokens.append(Token.refresh_token_hash.is_(None))
    return token_revocation.revoke(*tokens)
