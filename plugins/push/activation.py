"""Activation codes: issued for a user (security page, `idp factor push activate`), consumed once by
a device's registration, which stores the device's push credential.

An activation is a `factor_challenges` row of type "activation" whose lookup key is the SHA-256 of
the code; consuming it is the challenge store's conditional UPDATE, so two racing registrations
with one code give one device. A code shown on the security page works only while the session
that shows it lives (`AttemptContext.session_id`, `directory.session_live`); one shown at a login's
enrolment step only while that login wants it (`directory.login_enrolment_open`); the CLI's until
it expires.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from idp.factors import CredentialInfo, UserRef, directory, storable
from idp.factors.cli import iso_utc
from idp.factors.errors import CredentialConflict

from idp_plugins.push.protocol import Registration, activation_uri, code_digest, unix

ACTIVATION = "activation"
USED = "used"
SESSION = "session"  # the payload's key for the sid of the session that showed the code
LOOKUP_PREFIX = "push-activation:"
PUSH = "push"  # the factor's name (PushFactor.name), as the organization's allowed factors list it


@dataclass(frozen=True)
class Activation:
    id: str
    code: str
    uri: str
    expires_at: datetime


class ActivationRefused(Exception):
    """Unknown, used or expired code (one error for the three)."""


class DeviceExists(Exception):
    """The key in the registration is already a registered device."""


class AlreadyRegistered(Exception):
    """A retry of the registration that spent this code: its device, still registered."""

    def __init__(self, device: CredentialInfo) -> None:
        super().__init__(device.id)
        self.device = device


class TooManyDevices(Exception):
    """The account already has `factors.push.max_devices` live push devices."""


def issue(challenges, user: UserRef, *, ttl: int, issuer: str, now: datetime,
          transaction_id: str | None = None, session_id: str | None = None) -> Activation:
    """Create a one-time activation for `user`; the caller commits. `transaction_id`: the login
    whose enrolment step shows it, which must still want it when a phone registers (`register`);
    `session_id`: likewise the signed-in session whose security page shows it, which must still
    be live then: a sign-out (or any end of that session) retires the code it showed, as it ends
    the page (a code photographed off the screen, or left in a forgotten tab, registers no phone
    once its user has signed out). None (the CLI's, an operator's to hand over): its expiry only."""
    code = secrets.token_urlsafe(16)
    payload = {"type": ACTIVATION, **({SESSION: session_id} if session_id else {})}
    info = challenges.create(user, ttl=timedelta(seconds=ttl), lookup_key=LOOKUP_PREFIX + code_digest(code),
                             payload=payload, now=now, transaction_id=transaction_id)
    uri = activation_uri(issuer=issuer, code=code, username=user.username, expires_at=unix(info.expires_at))
    return Activation(id=info.id, code=code, uri=uri, expires_at=info.expires_at)


def record_issued(user: UserRef, act: Activation, *, actor: str, actor_id: int | None = None,
                  during: str | None = None) -> None:
    """Audit `push.activation_issued` in the caller's transaction: until it expires, whoever scans
    the code registers a phone on the account, so the admins see every code minted (by the user
    on the security page or at a login's enrolment, `during` "account" or "login"; by an operator,
    actor "cli")."""
    details = {"expires_at": iso_utc(act.expires_at)}
    if during:
        details["during"] = during
    directory.audit("push.activation_issued", user, actor=actor, actor_id=actor_id, details=details)


def record_registered(user: UserRef, device: CredentialInfo, *, via: str, **details) -> None:
    """Audit `push.device_registered`, the one event of a new push device, whichever way it came
    (`via`: "activation", "recovery_qr", "recover"), in the caller's transaction."""
    directory.audit("push.device_registered", user, actor=user.email, actor_id=user.id,
                    details={"credential_id": device.id, "device_name": device.label, "via": via, **details})


def register(challenges, store, registration: Registration, *, now: datetime,
             max_devices: int | None = None) -> CredentialInfo:
    """Consume the activation code and store the device, in the caller's transaction: the caller
    commits both (with its audit event) or, on an error, rolls both back.

    Raises ActivationRefused, AlreadyRegistered (a retry of the registration that spent this code,
    whose device is still registered), DeviceExists or TooManyDevices (the owner already has `max_devices`
    live push devices; counted under the owner's lock, so racing registrations with several codes
    cannot pass the cap together). The code is spent only together with the device
    it registers: a registration refused for its key (already a device, perhaps registered a
    moment ago by a racing request) leaves the code, and a recovery code consumed before it in
    the same transaction (plugins/qr_recovery), unspent. The conditional UPDATE keeps the
    activation locked until that commit, so a racing registration with the same code waits
    and then finds it used.
    """
    if not storable(registration.code):  # (a lone surrogate: no code has one, and hashing it raised)
        raise ActivationRefused()
    found = challenges.find(LOOKUP_PREFIX + code_digest(registration.code))
    if found is None or found.payload.get("type") != ACTIVATION or found.user_id is None:
        raise ActivationRefused()
    owner = directory.get_user(found.user_id)
    if owner is None:
        raise ActivationRefused()
    # The user's lock before the activation's row lock (the order every push write takes them in),
    # held to the commit: the device count below and the login's wishes cannot change meanwhile.
    # And a disabled account gains no way in, asked under the lock: a disabling (which holds the
    # row from its UPDATE to its commit) that committed while this waited is seen here. Asked
    # before it, the answer was the one from before the wait, and the code, expired by the
    # disabling at a later instant than `now`, still passed its check: a phone on a disabled
    # account (tests/concurrency/test_push_activation_race.py).
    if not directory.hold_enabled(owner):
        raise ActivationRefused()
    _refuse_if_spent_by(found, store, registration, owner)
    if not directory.factor_allowed(owner, PUSH):
        # The organization stopped accepting push since the code was issued: no device of a kind
        # it refuses (the enrolment that showed the code could not finish either).
        raise ActivationRefused()
    if found.transaction_id is not None:
        # Shown at a login's enrolment step, reached on the password alone: only while that login
        # still wants it (not cancelled or expired, and the user set up no factor meanwhile),
        # asked under the user's lock (a factor set up elsewhere at this moment is seen, or waits).
        if not directory.login_enrolment_open(found.transaction_id, owner):
            raise ActivationRefused()
    if found.payload.get(SESSION) is not None and not directory.session_live(found.payload[SESSION], owner):
        raise ActivationRefused()  # shown on the security page of a session that has ended since
    if max_devices is not None and store.count(owner.id) >= max_devices:
        raise TooManyDevices()
    claimed = challenges.answer(found.id, USED, payload={"type": ACTIVATION, "device_id": registration.device_id},
                                now=now, commit=False)
    if claimed is None:
        # Spent while this request waited for the locks: by a copy of this very registration
        # (a client's retry while the first was still under way) it is that copy's device.
        _refuse_if_spent_by(challenges.find(LOOKUP_PREFIX + code_digest(registration.code)), store,
                            registration, owner)
        raise ActivationRefused()
    try:
        device = store.create(claimed.user_id, label=registration.name, lookup_key=registration.device_id,
                              public={"jwk": registration.jwk, "device_name": registration.name, "protocol": 1},
                              now=now)
    except CredentialConflict as exc:
        raise DeviceExists() from exc
    # A phone registers outside the pages that issue recovery codes (an operator's code, a recovery
    # QR code, a page left unfinished): a user who holds none is shown a set at their next sign-in.
    # An enrolment page that finishes issues it itself and clears the mark.
    directory.owe_recovery_codes(owner)
    return device


def _refuse_if_spent_by(found, store, registration: Registration, owner: UserRef) -> None:
    """An activation the same key already spent is a phone sending its registration again, its
    201 lost on the way (a dropped connection): AlreadyRegistered while that device lives. Told
    "invalid_activation", the phone would think it is not registered, and a user scanning a new
    code would register a second device. ActivationRefused once that device is revoked."""
    if found is None or found.status != USED or found.payload.get("device_id") != registration.device_id:
        return
    device = store.find(registration.device_id)
    if device is not None and device.user_id == owner.id:
        raise AlreadyRegistered(device)
    raise ActivationRefused()  # (the code stays spent)


def status(challenges, store, activation_id: str, user_id: int | None, now: datetime) -> tuple[str, CredentialInfo | None]:
    """("pending" | "registered" | "expired", the device credential once registered)."""
    info = challenges.get(activation_id) if isinstance(activation_id, str) and activation_id else None
    if info is None or info.payload.get("type") != ACTIVATION or (user_id is not None and info.user_id != user_id):
        return "expired", None
    if info.status == USED:
        device = store.find(info.payload.get("device_id") or "")
        if device is not None and device.user_id == info.user_id:
            return "registered", device
        return "expired", None
    if info.status == "pending" and info.expires_at > now:
        bound = info.payload.get(SESSION)
        if bound is not None and not _session_still_live(bound, info.user_id):
            return "expired", None  # (what `register` answers now: the page offers a new code)
        return "pending", None
    return "expired", None


def _session_still_live(session_id: str, user_id: int | None) -> bool:
    owner = directory.get_user(user_id) if user_id is not None else None
    return owner is not None and directory.session_live(session_id, owner, hold=False)
