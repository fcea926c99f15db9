"""The security page's actions, apart from HTTP: enrol, rename, remove, regenerate, each audited.

Pending enrolments (a new TOTP seed, WebAuthn registration options) wait in the
generic challenge table (`account_enrolment`), never in the cookie; plugins seal
their own secrets inside the state they return.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

from flask import request
from flask_babel import lazy_gettext as _l

from idp import audit
from idp.db import db
from idp.factors.challenges import ACCOUNT_ENROLMENT, ChallengeStore
from idp.factors import enrolment
from idp.factors.contract import label_too_long
from idp.factors.directory import hold_enabled, lock_user, recovery_codes_issued
from idp.factors.registry import RECOVERY_CODES, current_registry
from idp.factors.sealed import open_view, seal_view
from idp.factors.types import Enrolled, FactorKind, Rejected
from idp.security.text import display_text
from idp.login.gate import decision_for, user_ref
from idp.models import User
from idp.policy import decide as policy
from idp.policy.status import today_utc  # (exemptions end on UTC days, as everywhere in policy)

PENDING = ChallengeStore(ACCOUNT_ENROLMENT)
PENDING_TTL = timedelta(minutes=10)


class AccountError(Exception):
    """A refused action, with a message for the user (lazily translated: `str(error)` is in the user's language).
    `spent`: the refusal spent the enrolment (`finish`, `one_answer_per_challenge`); `renewed`: its
    replacement, the pending id the page now shows (None when none could begin: the spent one's
    form must not be shown again)."""

    def __init__(self, message, renewed: str | None = None, *, spent: bool = False) -> None:
        super().__init__(message)
        self.renewed = renewed
        self.spent = spent


class AccountGone(AccountError):
    """The account was deleted (idp.users.delete) or disabled while the request waited for its
    row: nothing is stored for it, and the session that asked has ended (the page goes back to
    the security page, which signs in again; with the message, when it has one)."""


class IssuedByAdmin(AccountError):
    """A change to a credential an administrator issued (a recovery QR code): only an admin may
    change or revoke it (the page answers 403)."""

    def __init__(self) -> None:
        super().__init__(ISSUED_BY_ADMIN)


# Shown beside such a credential on the page, and as the refusal of a change to it.
ISSUED_BY_ADMIN = _l("Issued by your administrator: only an administrator can change or revoke it.")


def issued_by_admin(factor) -> bool:
    """Credentials of a factor users cannot add themselves (`user_enrollable = False`: an admin's
    recovery QR code) are the admins' to change or revoke; the user's page only shows them."""
    return not factor.user_enrollable


def _refuse_if_issued_by_admin(factor_name: str) -> None:
    registry = current_registry()
    if factor_name in registry and issued_by_admin(registry.get(factor_name)):
        raise IssuedByAdmin()


@dataclass
class FactorRow:
    factor: object
    description: object


def context(factor):
    """The attempt's context, naming this browser's session: an enrolment begun here creates
    nothing that outlives it (a push activation: AttemptContext.session_id)."""
    from idp.login import session as login_session

    here = login_session.current_session()
    return current_registry().context(factor, remote_addr=request.remote_addr, user_agent=request.user_agent.string,
                                      session_id=here.sid if here is not None else None)


def credentials(user: User) -> list[FactorRow]:
    """One row per credential (one per set for recovery codes), for the page's table."""
    return [FactorRow(factor, description)
            for factor, description in current_registry().describe_credentials(user_ref(user))]


def enrollable(user: User, *, finishing: bool = False) -> list:
    """The factors the user may add (`finishing`: may finish adding, one begun when it was
    offered, whose credential some factors store before the page's last step, as push does)."""
    decision = decision_for(user, {})
    factors = current_registry().all(kind=FactorKind.SECOND_FACTOR)
    if decision.allowed_factors is not None:
        factors = [f for f in factors if f.name in decision.allowed_factors]
    factors = [f for f in factors if f.user_enrollable]
    return factors if finishing else enrolment.addable(factors, user_ref(user))


def begin(user: User, name: str) -> str:
    """A pending enrolment of factor `name` for the page to show: its id.

    A double click on "Add" (or the form posted again at once) sent two copies: each began an
    enrolment, and the browser showed the second one's page, the first one's left behind (for push,
    a live activation code shown nowhere, audited as issued). So the enrolment is claimed first, a
    pending row with no step yet (`_being_begun`), under the user's row lock, and the copy that
    comes second finds what the first began from this browser session within `ONE_CLICK`, waits
    for it to be kept if need be, and shows that one; as the login's claim of a challenge does
    (idp.login.steps.second_factor._begin). Another session of the user begins its own."""
    factor = {f.name: f for f in enrollable(user)}.get(name)
    if factor is None:
        raise AccountError(_l("This method is not available."))
    session_id, ref = _session_id(), user_ref(user)
    _hold(ref, EXPIRED)  # the copies of one click, one after the other from here
    if session_id is not None:
        found = _begun_by_this_click(user, name, session_id)
        if found is not None:
            db.session.rollback()  # (nothing written: the user's lock goes while this waits)
            if _kept_in_time(found.id):
                return found.id
            _hold(ref, EXPIRED)  # the other copy's plugin failed, or is slow: this one begins its own
    claim = PENDING.create(user.id, ttl=PENDING_TTL, payload={"factor": name, SESSION: session_id})
    db.session.commit()  # the claim, before the plugin (which may commit itself: push's activation)
    from idp.login.steps.factor_step import FactorUnavailable, call_plugin, unavailable_message

    try:  # (a plugin's failure is that method's alone, as at login)
        step = call_plugin(factor, "begin_enrolment", user_ref(user), context(factor))
    except FactorUnavailable:  # (rolled back)
        PENDING.expire(claim.id)
        db.session.commit()
        raise AccountError(unavailable_message(factor)) from None
    # The view (a new TOTP seed, its QR code, an activation URI) sealed at rest, as in the login's
    # enrolment step (idp.login.steps.factor_step.remember_step).
    PENDING.keep(claim.id, {"factor": name, SESSION: session_id, "state": step.state,
                            "sealed_view": seal_view(step.view, _view_aad(user))})
    db.session.commit()
    return claim.id


def _hold(ref, message="") -> None:
    """`lock_user`, and AccountGone (rolled back; `message`, if any, for the page) when the user was
    deleted or disabled while this waited for their row: what `begin` and `finish` store next (a
    pending enrolment, a credential) is keyed by the user, and a deletion's commit left its foreign
    key nothing to name; what `remove` and `replace_recovery_codes` read next is the user's row
    again, or the page shown after a refusal (each was a 500).
    The same one statement as `lock_user` (idp.factors.directory.hold_enabled). `ref`: the
    user's UserRef, taken before any rollback (which expires the ORM user: reading it again
    would look for the row the deletion removed)."""
    if not hold_enabled(ref):
        db.session.rollback()
        raise AccountGone(message)


EXPIRED = _l("This enrolment expired. Start again.")

# The payload's key for the browser session an enrolment was begun from (`begin`).
SESSION = "session"
# How recent an enrolment of the same method begun from the same session must be to be taken for
# the one a second copy of the same click asks for: a double click, a form posted again at once.
# Well within the shortest validity of what a begin shows (a push activation code: 60 s at least);
# a later "Add" is the user asking again, and begins anew.
ONE_CLICK = timedelta(seconds=10)
# How long a copy waits for the enrolment the other copy of its click is beginning to be kept (a
# push activation: a few milliseconds). Longer, that copy failed on the way: this one begins its own.
BEGUN_ELSEWHERE_WAIT = 3.0


def _session_id() -> str | None:
    from idp.login import session as login_session

    here = login_session.current_session()
    return here.sid if here is not None else None


def _begun_by_this_click(user: User, name: str, session_id: str):
    """The latest pending enrolment of `name` begun from `session_id` within ONE_CLICK, or None."""
    from idp.db import utcnow

    since = utcnow() - ONE_CLICK
    found = [info for info in PENDING.pending(user=user.id)
             if info.payload.get("factor") == name and info.payload.get(SESSION) == session_id
             and info.created_at >= since]
    return found[-1] if found else None


def _being_begun(info) -> bool:
    """Claimed by `begin`, its plugin's step not kept yet."""
    return info.status == "pending" and "sealed_view" not in info.payload


def _kept_in_time(pending_id: str) -> bool:
    """Whether the enrolment another copy of this click is beginning is kept, pending, within
    BEGUN_ELSEWHERE_WAIT (nothing held while it waits: the other copy commits what it keeps)."""
    deadline = time.monotonic() + BEGUN_ELSEWHERE_WAIT
    info = PENDING.get(pending_id)
    while info is not None and _being_begun(info) and time.monotonic() < deadline:
        db.session.rollback()
        time.sleep(0.05)
        info = PENDING.get(pending_id)
    db.session.rollback()
    return info is not None and info.status == "pending" and not _being_begun(info)


def _view_aad(user: User) -> bytes:
    return f"enrolment-view|account|{user.id}".encode()


def pending_view(user: User, info) -> dict:
    """The enrolment page's view of a pending enrolment (`pending`, which checked that it opens)."""
    return open_view(info.payload.get("sealed_view"), _view_aad(user)) or {}


def pending(user: User, pending_id: str):
    info = PENDING.get(pending_id)
    if info is None or info.user_id != user.id or info.status != "pending" or _being_begun(info):
        raise AccountError(_l("This enrolment expired. Start again."))
    from idp.db import utcnow

    if info.expires_at <= utcnow():
        raise AccountError(_l("This enrolment expired. Start again."))
    if open_view(info.payload.get("sealed_view"), _view_aad(user)) is None:
        # Sealed with an encryption key dropped since (security.encryption_keys): its page cannot
        # be shown again, nor its seed opened. A new enrolment is one click away.
        raise AccountError(_l("This enrolment expired. Start again."))
    return info


def finish(user: User, pending_id: str, response: dict) -> tuple[object, list[str] | None]:
    """Finish an enrolment; returns (credential, new recovery codes if this was the first second factor)."""
    info = pending(user, pending_id)
    factor = {f.name: f for f in enrollable(user, finishing=True)}.get(info.payload["factor"])
    if factor is None:
        raise AccountError(_l("This method is not available."))
    ref = user_ref(user)
    # The user's row first (as the login's enrolment step): two enrolments of this user finish
    # one after the other, so the second sees what the first stored (`one_too_many`).
    # (It forgets what this request read of the credentials before it waited, `enrollable`: the
    # checks below, `_holds_recovery_codes` included, see another tab's set.)
    _hold(ref, EXPIRED)
    before = enrolment.credentials_before(ref)
    # Claimed first, committed with the credential: a double (or tenfold) submission waits on
    # the claim's row lock and then matches nothing, before it stores anything of its own.
    if PENDING.answer(pending_id, "done", commit=False) is None:
        db.session.rollback()
        raise AccountError(_l("This enrolment was already finished."))
    from idp.login.steps.factor_step import FactorUnavailable, call_plugin, unavailable_message

    try:  # (as at login: a plugin's failure, or an amr no ID token may carry, is that method's alone)
        outcome = call_plugin(factor, "finish_enrolment", ref, info.payload["state"], response, context(factor))
    except FactorUnavailable:  # rolled back, the claim too
        raise AccountError(unavailable_message(factor)) from None
    if not isinstance(outcome, Enrolled):
        from idp.login.steps.second_factor import message_for  # the login's wording, for the same failures

        message = message_for(outcome if isinstance(outcome, Rejected) else None)
        if factor.one_answer_per_challenge:
            raise AccountError(message, renewed=_renew(user, factor, pending_id), spent=True)
        db.session.rollback()  # the claim too: the user may try another code
        raise AccountError(message)
    if enrolment.one_too_many(factor, ref, outcome.credential.id):
        db.session.rollback()  # the claim too; the other tab's credential stays the user's one
        raise AccountError(_l("You already have this method."))
    from idp.login import session as login_session

    login_session.add_proof(outcome.amr or factor.amr, outcome.credential.id)
    codes = None
    details = enrolment.enrolled_details(factor, outcome, before, "account")
    if not _holds_recovery_codes(ref):
        # The first second factor comes with recovery codes: the log says when. (Not "had no
        # second factor before": a push device is stored, by the phone, before this step.)
        codes = regenerate_recovery_codes(user, audit_event=False)
        details["recovery_codes_issued"] = len(codes or ())
    audit.record("factor.enrolled", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                 details=details)
    db.session.commit()
    return outcome.credential, codes


def _renew(user: User, factor, pending_id: str) -> str | None:
    """A refused answer spends the enrolment of a factor whose challenge takes one answer
    (`one_answer_per_challenge`, WebAuthn: a registration signs the challenge): the claim
    `finish` holds commits, as expired (a rejection stores nothing else), so that a copy of the
    form waiting for the user's lock finds it finished; a new one begins for the page to show.
    Its id, or None when none could begin (the page then sends the user back to the security page,
    which says why: the spent one's form, shown again, would have the user answer the key's prompt
    for nothing)."""
    PENDING.expire(pending_id, answered_as="done")
    db.session.commit()
    try:
        return begin(user, factor.name)
    except AccountError:
        return None


def _holds_recovery_codes(ref) -> bool:
    factor = current_registry().recovery_codes()
    return factor is None or factor.is_configured_for(ref)


def rename(user: User, credential_id: int, label: str) -> None:
    label = display_text(label or "")  # as the store keeps it (the audit event's copy too)
    if not label:
        raise AccountError(_l("Give it a name."))
    too_long = label_too_long(label)
    if too_long:
        raise AccountError(too_long)
    store = current_registry().store
    before = store.get(user_ref(user), credential_id)
    if before is not None:
        _refuse_if_issued_by_admin(before.factor)
        factor = current_registry().get(before.factor) if before.factor in current_registry() else None
        if factor is not None and label == factor.shown_label(before) and label != before.label:
            # The name as the page showed it, sent back unchanged: a label the factor gave itself
            # ("Imported authenticator"), shown in the reader's language, stays as it is stored.
            return
        _refuse_a_name_in_use(user, store, before, label)
    if before is None or not store.rename(user_ref(user), credential_id, label):
        raise AccountError(_l("No such method."))
    if before.label == label:
        return  # nothing changes: no event
    audit.record("factor.renamed", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                 details={"credential_id": credential_id, "factor": before.factor, "label": label,
                          "previous_label": before.label})
    db.session.commit()


def _refuse_a_name_in_use(user: User, store, credential, label: str) -> None:
    """Two methods of one kind with one name cannot be told apart (which phone to remove, which
    one a notice is about): a person choosing a name is asked for another. (A name given at
    creation, by a device say, is made distinct by the store instead: `distinct_label`.)"""
    lock_user(user.id)  # a parallel rename or a new device must not take the name meanwhile
    if store.label_in_use(user_ref(user), label, factor=credential.factor, excluding=credential.id):
        db.session.rollback()
        raise AccountError(_l("You already have one called “%(name)s”: choose another name.", name=label))


LAST_FACTOR_REQUIRED = _l("Two-factor authentication is required for your account: "
                          "add another method before removing your last one.")


def keeps_last_factor(user: User, credential_factor: str) -> bool:
    """Whether removing a credential of `credential_factor` would take a required user's last
    second factor: the removal refuses it, so the page that asks to confirm it says so instead
    (it promised "two-factor authentication will be off" to a user who cannot turn it off)."""
    if current_registry().kind_of(credential_factor) != FactorKind.SECOND_FACTOR or user.second_factor_count > 1:
        return False
    return not policy.can_remove_factor(user, user.org, 0, today_utc())[0]


def remove(user: User, credential_id: int, *, today: date | None = None) -> str:
    """Remove one of the user's methods; returns its factor's label (for the confirmation)."""
    registry = current_registry()
    ref = user_ref(user)
    credential = registry.store.get(ref, credential_id)
    if credential is None or credential.factor == RECOVERY_CODES:
        # (Recovery codes go as a set, replaced by new ones: never one code at a time.)
        raise AccountError(_l("No such method."))
    _refuse_if_issued_by_admin(credential.factor)
    kind = registry.kind_of(credential.factor)
    if kind == FactorKind.SECOND_FACTOR:
        # Counted under a lock on the user's row, in this write transaction: two removals at once
        # must not each count the other's factor as remaining (PostgreSQL: lock_user, then read
        # afresh; SQLite: the transaction already holds the write lock, BEGIN IMMEDIATE). Not FOR
        # UPDATE: the token families revoked below (end_proved_by) would deadlock with a refresh
        # (lock_user).
        _hold(ref)
        # What the policy judges is read again under the lock too, not only the count: an
        # administrator's "Require 2FA" committed while this waited for the row must be seen (an
        # audit left a required user without a factor, their requirement read before the wait).
        db.session.refresh(user)
        db.session.refresh(user.org)
        remaining = user.second_factor_count - 1
        allowed, reason = policy.can_remove_factor(user, user.org, remaining, today or today_utc())
        if not allowed:
            raise AccountError(LAST_FACTOR_REQUIRED)
    if registry.remove_credential(ref, credential_id) is None:  # removed meanwhile (a parallel request)
        db.session.rollback()
        raise AccountError(_l("No such method."))
    if kind == FactorKind.SECOND_FACTOR and remaining > 0 and not _another_usable(registry, ref) \
            and not policy.can_remove_factor(user, user.org, 0, today or today_utc())[0]:
        # What remains still counts as 2FA but signs no one in now (a security key suspended as a
        # possible clone, push suspended after a fraud report): removing this one would leave a
        # required user with recovery codes alone. (Asked after the removal, in its transaction:
        # each factor then answers for what is left of it.)
        db.session.rollback()
        raise AccountError(_l("Two-factor authentication is required for your account, and your other "
                              "methods cannot be used to sign in at the moment: add another method before "
                              "removing this one."))
    details = {"factor": credential.factor, "credential_id": credential_id, "label": credential.label}
    was_last = kind == FactorKind.SECOND_FACTOR and remaining == 0
    retired = registry.retire_recovery_codes_if_unprotected(ref) if was_last else []
    if was_last:
        details["recovery_codes_revoked"] = len(retired)
    audit.record("factor.removed", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                 details=details)
    from idp import sessions
    from idp.login import session as login_session

    # Other browsers signed in with it are signed out (a lost phone's); this one, which has just
    # proved a recent login, stays.
    here = login_session.current_session()
    sessions.end_proved_by(user, [credential_id, *retired], actor_id=user.id, actor=user.email,
                           keep_sid=here.sid if here is not None else None)
    db.session.commit()
    return registry.label_of(credential.factor)


def _another_usable(registry, ref) -> bool:
    """Does the user still hold a second factor they can sign in with (`Factor.is_configured_for`)?"""
    return any(factor.is_configured_for(ref) for factor in registry.all(kind=FactorKind.SECOND_FACTOR))


def replace_recovery_codes(user: User) -> list[str] | None:
    """The security page's "Generate new codes": a new set in place of the old, audited.

    Only for a user who holds a second factor. Recovery codes stand in for one
    (registry.retire_recovery_codes_if_unprotected): a set made without one would be a way past
    the second step, planted by whoever held a password-only session, and the user's first
    enrolment would then keep it rather than show a fresh set.
    """
    ref = user_ref(user)
    _hold(ref)  # the last factor's removal (under the same lock) cannot slip in between
    if current_registry().store.second_factors_held(ref) == 0:
        db.session.rollback()
        raise AccountError(_l("Recovery codes come with a second factor: add a sign-in method first."))
    return regenerate_recovery_codes(user)


def regenerate_recovery_codes(user: User, audit_event: bool = True) -> list[str] | None:
    factor = current_registry().recovery_codes()
    if factor is None:
        return None
    codes = factor.regenerate(user_ref(user))
    recovery_codes_issued(user.id)  # (none owed any more: the login shows none)
    if audit_event:
        audit.record("recovery_codes.regenerated", org_id=user.org_id, actor_id=user.id, actor=user.email,
                     subject_id=user.id)
        db.session.commit()
    return codes
