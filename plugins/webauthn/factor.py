"""WebAuthn security keys and passkeys, on py_webauthn 3.

Registration asks for a discoverable credential when the authenticator can
(`residentKey: preferred`, so a passkey where possible), user verification
preferred, attestation `none`; the browser's response is verified against the RP
id and origin from the `AttemptContext` (configuration, else the issuer URL).
The credential id (base64url) is the `lookup_key`, the COSE public key lives in
`public`, the signature counter in `counter`.

At login the options list the user's keys (`allowCredentials`), the challenge
stays in the server-side state, and the assertion is verified with the stored key.
A challenge takes one answer (`one_answer_per_challenge`): after a refused one the
login and the security page begin a new challenge (or registration) before showing
the page again.
Sign counts: py_webauthn is called with a stored count of 0 so that *we* decide,
in one place: an authenticator that always reports 0 (most passkeys) is accepted
(`touch`); otherwise the new count must exceed the stored one (else
`Rejected("sign_count_regressed")`, a possible cloned key) and is advanced with one
conditional UPDATE (`Rejected("replayed")` when it matches nothing: a backstop, since a
duplicate of the same post never gets this far -- the login step reads the login's version
again under the user's lock, idp.login.transaction.hold_user_at -- and another login's
challenge is another one).

A regression suspends the key (`public["suspected_clone_at"]`, audit event
`webauthn.clone_suspected`, shown among the admins' security alerts): from then on it
is refused (`Rejected("credential_suspended")`) and not offered, whatever counts it
presents later -- a clone a few counts behind would otherwise catch up in as many
tries. Like a suspended push, it still counts as the user's second factor: the login
offers their other methods. The user removes it and adds the key again (an admin can
revoke it).

`amr` (RFC 8176): "user" (the authenticator always tests user presence; py_webauthn
refuses assertions without the UP flag) plus "hwk" (proof of possession of a
hardware-secured key), or "swk" for a credential the authenticator reports as backed
up (a synced passkey: the key leaves the device, so it is software-secured in RFC 8176's
sense). RFC 8176 has no value for "user verified" that does not claim how (PIN "pin",
fingerprint "fpt", face "face"), and WebAuthn does not tell which was used; UV is reported
in `Verified.facts["user_verified"]` instead of guessing.

User verification (`factors.webauthn.user_verification`): "preferred" by default, as above;
"required" asks every registration and login for it (a PIN or biometrics on the key, so that a
stolen key alone is not enough) and refuses a response without the UV flag
(`Rejected("user_not_verified")`, not counted as a guess: the key is the user's, it just did not
ask); "discouraged" asks for presence only (a touch), for keys whose PIN prompt gets in the way.
"""
from __future__ import annotations

import hashlib
import hmac
import json

from flask import current_app
from flask_babel import lazy_gettext as _l

from idp.factors import (
    CredentialConflict, Description, Enrolled, Factor, FactorKind, FactorMisconfigured, Rejected, Step, Verified, directory,
    default_label, display_text, label_too_long,
)

MAX_RESPONSE = 64 * 1024
# Credential ids as stored (base64url): the lookup column's width. WebAuthn allows ids of up to 1023
# bytes; authenticators in use make 16 to 128, and a longer one is refused rather than a 500.
MAX_CREDENTIAL_ID = 255

# What the person is told for the rejections only this factor gives (`Rejected.message`); the
# core words the shared ones (an invalid or replayed response).
POSSIBLY_CLONED = _l("This security key may have been cloned: it can no longer be used to sign "
                     "in. Use another method, then remove the key and add it again.")
SUSPENDED = _l("This security key was suspended as a possible clone. Use another method, "
               "then remove the key and add it again.")
# (A code's "replayed" wording says to wait for the next code: a key has no next code.)
ANSWER_USED = _l("This answer from your key was already used. Try again.")
ALREADY_REGISTERED = _l("This key is already registered to your account: use another key, or go back.")
NOT_VERIFIED = _l("Your key must confirm it is you (a PIN, fingerprint or face) here: set up a PIN or "
                  "biometrics on the key, or use another method.")
# factors.webauthn.user_verification -> whether a response without the UV flag is refused.
USER_VERIFICATION = {"preferred": False, "required": True, "discouraged": False}


# py_webauthn is imported by the ceremonies that use it, not with this module: its attestation
# formats pull in pyasn1's X.509 modules, 0.17 s that every `idp` command and every worker's
# start paid whether or not anyone uses a security key (the registry loads every factor).


def _known_transports() -> frozenset:
    from webauthn.helpers.structs import AuthenticatorTransport

    return frozenset(t.value for t in AuthenticatorTransport)


def _descriptors(credentials) -> list:
    """The WebAuthn descriptors of these stored credentials (their ids and known transports)."""
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    known = _known_transports()
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.lookup_key), transports=[
        AuthenticatorTransport(n) for n in (c.public.get("transports") or []) if n in known]) for c in credentials]


def _parse(response) -> dict | None:
    """The credential JSON posted in the `response` field, or None when it is not a JSON object."""
    raw = response.get("response")
    if not isinstance(raw, str) or not raw or len(raw) > MAX_RESPONSE:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # (RecursionError: brackets nested thousands deep)
        return None
    return data if isinstance(data, dict) else None


def _amr(backed_up: bool) -> tuple[str, ...]:
    """A synced passkey's key leaves the device: software-secured in RFC 8176's sense."""
    return ("swk", "user") if backed_up else ("hwk", "user")


def _suspended(credential) -> bool:
    return bool(credential.public.get("suspected_clone_at"))


class WebAuthnFactor(Factor):
    name = "webauthn"
    label = _l("Security key or passkey")
    kind = FactorKind.SECOND_FACTOR
    amr = ("hwk", "user")
    allow_multiple = True
    user_enrollable = True
    phishing_resistant = True
    # A refused assertion (or registration) spends its challenge: the page gets a new one, and a
    # valid response made for the refused one's challenge is refused (it no longer matches).
    one_answer_per_challenge = True

    def __init__(self, store, challenges, settings=None) -> None:
        super().__init__(store, challenges, settings)
        # Checked as the app starts (the registry builds factors then): one bad line, never a 500
        # at a login. (py_webauthn itself is imported later, see above.)
        self._uv = str(self.settings.get("user_verification", "preferred"))
        if self._uv not in USER_VERIFICATION:
            raise FactorMisconfigured(f"factors.webauthn.user_verification must be one of "
                                      f"{', '.join(USER_VERIFICATION)} (got {self._uv!r})")

    def _user_verification(self):
        """The UserVerificationRequirement the settings ask for, for the ceremonies' options."""
        from webauthn.helpers.structs import UserVerificationRequirement

        return UserVerificationRequirement(self._uv)

    @property
    def requires_user_verification(self) -> bool:
        return USER_VERIFICATION[self._uv]

    def _rp(self, ctx) -> tuple[str, str]:
        if not ctx.rp_id or not ctx.origin:
            raise FactorMisconfigured("factors.webauthn: no RP id / origin (set rp_id and origin or the issuer)")
        return ctx.rp_id, ctx.origin

    def user_handle(self, user) -> bytes:
        """A stable, opaque WebAuthn user handle (no e-mail or database id leaves the server)."""
        return hmac.new(current_app.secret_key.encode(), f"webauthn-user-handle|{user.id}".encode(),
                        hashlib.sha256).digest()

    # --- enrolment -----------------------------------------------------------------------

    def begin_enrolment(self, user, ctx):
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers import bytes_to_base64url
        from webauthn.helpers.structs import (AttestationConveyancePreference, AuthenticatorSelectionCriteria,
                                              ResidentKeyRequirement)

        rp_id, _origin = self._rp(ctx)
        existing = _descriptors(c for c in self.store.list(user) if c.lookup_key)
        options = generate_registration_options(
            rp_id=rp_id, rp_name=str(self.settings.get("rp_name") or "Identity Provider"),
            user_id=self.user_handle(user), user_name=user.email or user.username,
            user_display_name=user.display_name or user.email or user.username,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=self._user_verification()),
            exclude_credentials=existing)
        return Step(state={"challenge": bytes_to_base64url(options.challenge)},
                    view={"options": json.loads(options_to_json(options)), "mode": "create"})

    def finish_enrolment(self, user, state, response, ctx):
        from webauthn import verify_registration_response
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

        rp_id, origin = self._rp(ctx)
        data, challenge = _parse(response), state.get("challenge")
        if data is None or not isinstance(challenge, str):
            return Rejected("invalid_response")
        # Display text first: a name of nothing but invisible characters is no name (the default one).
        # Checked before the key's answer, which changes nothing till it is stored.
        label = display_text(str(response.get("label") or ""))
        too_long = label_too_long(label)
        if too_long:
            return Rejected("label_too_long", counts_as_failure=False, message=too_long)
        try:
            result = verify_registration_response(credential=data, expected_challenge=base64url_to_bytes(challenge),
                                                  expected_rp_id=rp_id, expected_origin=origin)
        except Exception:  # py_webauthn raises a zoo of types for malformed or wrong responses
            return Rejected("invalid_response")
        if self.requires_user_verification and not result.user_verified:
            return Rejected("user_not_verified", counts_as_failure=False, message=NOT_VERIFIED)
        transports = (data.get("response") or {}).get("transports")
        transports = transports if isinstance(transports, list) else []
        known_transports = _known_transports()
        credential_id = bytes_to_base64url(result.credential_id)
        if len(credential_id) > MAX_CREDENTIAL_ID:  # the spec allows 1023 bytes; the lookup column holds 255 characters
            return Rejected("invalid_response")
        label = label or self._next_label(user)
        public = {"public_key": bytes_to_base64url(result.credential_public_key), "aaguid": result.aaguid,
                  "device_type": getattr(result.credential_device_type, "value", str(result.credential_device_type)),
                  "backed_up": bool(result.credential_backed_up), "user_verified": bool(result.user_verified),
                  # The transports WebAuthn names, and nothing else the browser (or a script) sent: a
                  # made-up one is never used (_descriptors), and one PostgreSQL cannot store (a NUL)
                  # failed the enrolment as "cannot be used at the moment" until an audit saw it.
                  "transports": [t for t in transports if isinstance(t, str) and t in known_transports][:8]}
        try:
            credential = self.store.create(user, label=label, public=public, counter=result.sign_count,
                                           lookup_key=credential_id, now=ctx.now)
        except CredentialConflict:
            holder = self.store.find(credential_id)
            if holder is None or holder.user_id != user.id:
                # Another account's key (its id copied into a made-up registration: ids are no
                # secret): not this user's mistake to be told about, nor that the id is in use.
                return Rejected("invalid_response")
            return Rejected("already_registered", counts_as_failure=False, message=ALREADY_REGISTERED)
        return Enrolled(credential, amr=_amr(bool(result.credential_backed_up)))

    def _next_label(self, user) -> str:
        return default_label(self, self.store.count(user) + 1)

    # --- login ---------------------------------------------------------------------------

    def begin_challenge(self, user, ctx):
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers import bytes_to_base64url

        rp_id, _origin = self._rp(ctx)
        allowed = _descriptors(c for c in self.store.list(user) if c.lookup_key and not _suspended(c))
        options = generate_authentication_options(rp_id=rp_id, allow_credentials=allowed,
                                                  user_verification=self._user_verification())
        return Step(state={"challenge": bytes_to_base64url(options.challenge)},
                    view={"options": json.loads(options_to_json(options)), "mode": "get"})

    def verify(self, user, state, response, ctx):
        from webauthn import verify_authentication_response
        from webauthn.helpers import base64url_to_bytes

        rp_id, origin = self._rp(ctx)
        data, challenge = _parse(response), state.get("challenge")
        raw_id = (data.get("rawId") or data.get("id")) if data is not None else None
        if data is None or not isinstance(challenge, str) or not isinstance(raw_id, str) \
                or not 0 < len(raw_id) <= MAX_CREDENTIAL_ID or "\x00" in raw_id:
            return Rejected("invalid_response")
        credential = self.store.find(raw_id)
        if credential is None or credential.user_id != user.id:
            return Rejected("unknown_credential")
        if _suspended(credential):
            return Rejected("credential_suspended", counts_as_failure=False, message=SUSPENDED)
        try:
            result = verify_authentication_response(
                credential=data, expected_challenge=base64url_to_bytes(challenge), expected_rp_id=rp_id,
                expected_origin=origin, credential_public_key=base64url_to_bytes(credential.public["public_key"]),
                credential_current_sign_count=0)
        except Exception:
            return Rejected("invalid_response")
        if self.requires_user_verification and not result.user_verified:
            # Before the counter: a response refused for this leaves the key's count where it was
            # (the next, verified, answer is a count higher still).
            return Rejected("user_not_verified", counts_as_failure=False, message=NOT_VERIFIED)
        new, stored = int(result.new_sign_count), credential.counter
        if new == 0 and stored == 0:
            self.store.touch(credential.id, now=ctx.now)  # an authenticator without a counter
        elif new <= stored:
            self._suspend(user, credential, stored, new, ctx)
            return Rejected("sign_count_regressed", message=POSSIBLY_CLONED)
        elif not self.store.advance_counter(credential.id, new, now=ctx.now):
            return Rejected("replayed", message=ANSWER_USED)
        return Verified(credential.id, _amr(bool(result.credential_backed_up)), facts={"user_verified": bool(result.user_verified)})

    def _suspend(self, user, credential, stored: int, presented: int, ctx) -> None:
        """A possible clone: the key is refused from now on, the browsers signed in with it (the
        original's or the clone's, no one can tell) are signed out, and the admins are told (all
        commits with the login step's outcome)."""
        self.store.update_public(credential.id, {"suspected_clone_at": ctx.now.isoformat(timespec="seconds")})
        actor = user.email or user.username
        directory.audit("webauthn.clone_suspected", user, actor=actor, actor_id=user.id,
                        details={"credential_id": credential.id, "factor": self.name, "label": credential.label,
                                 "stored_sign_count": stored, "presented_sign_count": presented,
                                 "ip": ctx.remote_addr})
        directory.end_sessions_proved_by(user, credential.id, actor=actor, actor_id=user.id)

    def is_configured_for(self, user) -> bool:
        """A key the user can sign in with: live and not suspended as a possible clone."""
        return any(not _suspended(c) for c in self.store.list(user))

    def describe(self, credential):
        facts = {"type": "passkey" if credential.public.get("backed_up") else "security key"}
        if _suspended(credential):
            facts["status"] = "suspended (may be cloned)"
        return Description(id=credential.id, factor=self.name, label=self.shown_label(credential),
                           created_at=credential.created_at, last_used_at=credential.last_used_at, facts=facts)
