"""Recovery QR codes: a recovery factor that an admin issues and the user spends once.

Two uses of one code (docs/recovery.md):

- at the login, under "I can't use my usual method", the user types the code's secret
  (or pastes what the QR holds); `verify` consumes it and answers `Verified` with
  `then_enrol`, so the login continues into registering a new factor;
- on a new phone, the companion app scans the QR code and redeems it at
  `POST /factors/qr_recovery/redeem`, which registers the phone's own push key
  (device.py). The same blueprint serves personal accounts' recovery by password plus
  an e-mailed code (personal.py).

Users cannot enrol it themselves (`user_enrollable = False`): `issue` is called by the
admin page (idp/admin/recovery_qr.py) and `idp recovery-qr issue`. Disabling the account revokes
the codes not yet used (`on_account_disabled`): enabling it again brings none back.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import current_app
from flask_babel import lazy_gettext as _l

from idp.factors import (AttemptContext, CredentialInfo, Description, Factor, FactorKind, Rejected, Step, UserRef,
                         Verified, directory)

from idp_plugins.qr_recovery import issuing
from idp_plugins.qr_recovery import secret as secrets_
from idp_plugins.qr_recovery.settings import QrRecoverySettings


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# A real code of the user's that no longer works, typed at the login: whoever typed it holds its
# secret, so it is told which (as the device endpoint tells it), in this factor's own words. The
# core's wording of "replayed" ("wait for the next one") fits a TOTP code, and its "expired" means
# a challenge that timed out ("a new one has been started"): neither fits a code an admin must
# replace. Expired and revoked are no guesses (not counted); each attempt is in the audit log
# (`login.second_factor_failed` with its reason).
_GONE = {
    issuing.USED: lambda: Rejected("replayed", message=_l(
        "That recovery code was already used. Ask your administrator for a new one.")),
    issuing.EXPIRED: lambda: Rejected("code_expired", counts_as_failure=False, message=_l(
        "That recovery code has expired. Ask your administrator for a new one.")),
    issuing.REVOKED: lambda: Rejected("code_revoked", counts_as_failure=False, message=_l(
        "That recovery code was revoked by an administrator. Ask your administrator for a new one.")),
}


class QrRecoveryFactor(Factor):
    name = "qr_recovery"
    label = _l("Use a recovery code from your administrator")
    own_labels = {issuing.LABEL: _l("Recovery QR code")}  # what every code is called (issuing.issue)
    kind = FactorKind.RECOVERY
    # A one-time secret handed out of band by the admin.
    amr = ("otp",)
    allow_multiple = True
    user_enrollable = False
    supports_poll = False

    def __init__(self, store, challenges, settings=None) -> None:
        super().__init__(store, challenges, settings)
        self.qr_settings = QrRecoverySettings.from_mapping(self.settings)

    def pepper(self) -> bytes:
        return secrets_.derive_pepper(current_app.secret_key, self.qr_settings.pepper)

    # --- issuing (admin page, CLI) ---------------------------------------------------------

    def issue(self, user: UserRef, actor: str, ttl: int | timedelta | None = None, *, actor_id: int | None = None,
              issuer: str | None = None, now: datetime | None = None, commit: bool = True) -> issuing.Issued:
        """Issue a one-time recovery QR code for `user` on behalf of `actor` (an admin's e-mail, "cli").

        `ttl` in seconds (default `default_ttl`, at most `max_ttl`: ValueError beyond). Committed and
        audited (`recovery_qr.issued`); with `commit=False` the caller commits once the code is in
        the hands it is meant for (a PNG written), or rolls back. The returned `Issued` holds the
        only copy of the secret: show it once (`svg()`, `png()`, `uri`, `secret`)::

            issued = registry.get("qr_recovery").issue(user_ref, actor=admin.email, ttl=3600)
        """
        seconds = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else int(ttl or self.qr_settings.default_ttl)
        if not 60 <= seconds <= self.qr_settings.max_ttl:
            from idp.factors.cli import format_duration

            raise ValueError(f"the validity must be between 1m and {format_duration(self.qr_settings.max_ttl)}")
        if issuer is None:
            from idp.factors.registry import current_registry

            issuer = current_registry().settings.issuer
        return issuing.issue(self.store, user, pepper=self.pepper(), issuer=issuer, ttl=timedelta(seconds=seconds),
                             now=now or _utcnow(), actor=actor, actor_id=actor_id, commit=commit)

    def revoke(self, user: UserRef, credential_id: int, actor: str, *, actor_id: int | None = None,
               now: datetime | None = None) -> CredentialInfo | None:
        """Revoke one of the user's codes (audited `recovery_qr.revoked`, committed); None if not live."""
        return issuing.revoke(self.store, user, credential_id, now=now or _utcnow(), actor=actor, actor_id=actor_id)

    def state_of(self, user: UserRef, credential_id: int, now: datetime | None = None) -> str | None:
        """What became of the user's code `credential_id`: "valid", "used", "expired" or "revoked"
        (issuing.VALID ...), or None when the user has no such code (another user's, made up)."""
        code = self.store.get(user, credential_id, include_revoked=True)
        return issuing.state_of(code, now or _utcnow()) if code is not None else None

    def on_account_disabled(self, user: UserRef, *, actor: str, actor_id: int | None) -> None:
        """A disabled account's codes are revoked (`recovery_qr.revoked`, `reason` "account_disabled"):
        a code issued before a suspension (after a push fraud report, say) must not register a
        phone or pass a login once the account is enabled again; the admin issues a new one then.
        (While it is disabled every redemption refuses it anyway: device.py, the password step.)"""
        issuing.revoke_all(self.store, user, now=_utcnow(), actor=actor, actor_id=actor_id, reason="account_disabled")

    def on_account_promoted(self, user: UserRef, *, actor: str, actor_id: int | None) -> None:
        """A member made an administrator keeps no code another admin issued (`recovery_qr.revoked`,
        `reason` "promoted"): an administrator's codes are the operator's to issue, and its issuer
        could no longer see or revoke it. The operator's own (`idp recovery-qr issue`) stay."""
        issuing.revoke_all(self.store, user, now=_utcnow(), actor=actor, actor_id=actor_id, reason="promoted",
                           unless_issued_by=issuing.OPERATOR)

    def outstanding(self, user: UserRef, now: datetime | None = None) -> list[CredentialInfo]:
        return issuing.outstanding(self.store, user, now or _utcnow())

    # --- discovery -------------------------------------------------------------------------

    def is_configured_for(self, user: UserRef) -> bool:
        """Offered at the login only while the user holds a code that still works."""
        return bool(self.outstanding(user))

    # --- enrolment: not by users ------------------------------------------------------------

    def begin_enrolment(self, user: UserRef, ctx: AttemptContext) -> Step:
        """Recovery QR codes are issued by an admin (`issue`), never enrolled by the user."""
        return Step(state={}, view={"admin_issued": True})

    def finish_enrolment(self, user, state, response, ctx):
        return Rejected("admin_issued", counts_as_failure=False)

    # --- login -----------------------------------------------------------------------------

    def begin_challenge(self, user: UserRef, ctx: AttemptContext) -> Step:
        return Step(state={}, view={"length": secrets_.LENGTH})

    def verify(self, user, state, response, ctx):
        """The typed secret (field `code`, or the whole recovery URI pasted): consumed once, then the
        login goes on to enrolling a new factor (`then_enrol`)."""
        typed = response.get("code") if hasattr(response, "get") else None
        if isinstance(typed, str) and typed.strip().startswith(secrets_.URI_SCHEME + "://"):
            try:
                typed = secrets_.parse_uri(typed.strip()).get("secret")
            except ValueError:
                typed = None
        if not isinstance(typed, str) or not typed.strip():
            return Rejected("invalid_code", counts_as_failure=False)
        status, credential = issuing.lookup(self.store, self.pepper(), typed, ctx.now, user)
        if status == issuing.UNKNOWN:
            return Rejected("invalid_code")
        if status != issuing.VALID:
            return _GONE[status]()
        if directory.is_disabled(user):  # (the password step refuses it first; a code is never spent for one)
            return Rejected("account_disabled", counts_as_failure=False)
        if not issuing.consume(self.store, credential, ctx.now):
            return _GONE[issuing.USED]()
        return Verified(credential_id=credential.id, amr=self.amr,
                        facts={"then_enrol": True, "recovery": "qr_recovery"})

    # --- extras ----------------------------------------------------------------------------

    def device_blueprint(self):
        from idp_plugins.qr_recovery.device import build_blueprint

        return build_blueprint(self)

    def describe(self, credential: CredentialInfo) -> Description:
        expires = int(credential.public.get("expires_at") or 0)
        moment = datetime.fromtimestamp(expires, timezone.utc).replace(tzinfo=None) if expires else None
        state = "used" if credential.used_at else (
            "expired" if moment is not None and moment <= _utcnow() else "unused")
        return Description(id=credential.id, factor=credential.factor,
                           label=self.shown_label(credential), created_at=credential.created_at,
                           last_used_at=credential.last_used_at,
                           facts={"expires": moment, "status": state,  # (a datetime: pages format it)
                                  "issued_by": credential.public.get("issued_by", "")})

    @classmethod
    def cli_command(cls):
        from idp_plugins.qr_recovery.cli import recovery_qr_group

        return recovery_qr_group(cls.name)
