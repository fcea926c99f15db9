"""Push approval with number matching: the factor class the pipeline and the account page drive.

Enrolment shows an activation QR code; the device registers itself over the protocol
(docs/push-protocol.md) and `finish_enrolment` only confirms that it did. A login creates a
challenge with a number shown in the browser; the device answers it (signed, exactly once) and
`verify`/`poll` read the outcome. The moving parts live in their own modules: `protocol`
(JOSE), `activation`, `login_challenge`, `device` (HTTP), `transport` and `wake`.
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l

from idp.factors import (AttemptContext, CredentialInfo, Description, Enrolled, Factor, FactorKind, Pending,
                         Rejected, Step, UserRef, Verified, directory, label_text)

from idp_plugins.push import activation, login_challenge
from idp_plugins.push.protocol import unix, utc_now
from idp_plugins.push.settings import PushSettings
from idp_plugins.push.transport import build_transport
from idp_plugins.push.wake import Waker, challenge_channel

# Why no request was sent (`_refusal`), as the challenge page says it (templates/.../challenge.html):
# also the answer when the person presses "Continue" on that page.
REFUSAL_MESSAGES = {
    "suspended": _l("Approving on your phone is suspended for your account after a fraud report. "
                    "Use another method or contact your administrator."),
    "denied": _l("This sign-in was refused on your phone, so no new request is sent. "
                 "Use another method, or start the sign-in again."),
    "too_many_requests": _l("Too many approval requests were sent to your phone recently. "
                            "Wait a few minutes or use another method."),
}

WAKER_KEY = "idp.push.waker"


def qr_svg(data: str) -> str:
    import segno

    return segno.make(data, error="m").svg_inline(scale=4, dark="#000", light="#fff", omitsize=True)


class PushFactor(Factor):
    name = "push"
    label = _l("Approve on your phone")
    kind = FactorKind.SECOND_FACTOR
    # swk: the device key signed the answer; user: the user matched the number (see the protocol doc).
    amr = ("swk", "user")
    allow_multiple = True
    user_enrollable = True
    supports_poll = True

    def __init__(self, store, challenges, settings=None) -> None:
        super().__init__(store, challenges, settings)
        self.push_settings = PushSettings.from_mapping(self.settings)

    # --- plumbing --------------------------------------------------------------------------

    def waker(self) -> Waker:
        """One per app: wakes long-polls in this process, and through Redis in others."""
        extensions = current_app.extensions
        waker = extensions.get(WAKER_KEY)
        if waker is None:  # first use; setdefault keeps one waker if two threads get here together
            waker = extensions.setdefault(WAKER_KEY, Waker(extensions.get("idp.redis")))
        return waker

    def transport(self):
        return build_transport(self.push_settings, self.waker())

    # --- discovery -------------------------------------------------------------------------

    def is_configured_for(self, user: UserRef) -> bool:
        """A live device, and push not suspended by a fraud report. The devices come from the
        store's list (the one read of the user's credentials a login page makes anyway), not a
        COUNT through the session, which opened a transaction (SQLite's write lock) to read."""
        return bool(self.store.list(user)) and not directory.push_suspended(user.id)

    # --- enrolment -------------------------------------------------------------------------

    def begin_enrolment(self, user: UserRef, ctx: AttemptContext) -> Step:
        act = self.issue_activation(user, ctx.issuer, ctx.now, during="login" if ctx.transaction_id else "account",
                                    transaction_id=ctx.transaction_id,
                                    session_id=None if ctx.transaction_id else ctx.session_id)
        try:
            status_url = ctx.urls.endpoint("activation_status", activation_id=act.id)
        except (RuntimeError, LookupError):  # no URL context (CLI, conformance kit): the page works without it
            status_url = None
        view = {"qr_svg": qr_svg(act.uri), "activation_uri": act.uri, "expires_at": unix(act.expires_at),
                "status_url": status_url, "valid_minutes": max(1, self.push_settings.activation_ttl // 60)}
        return Step(state={"activation_id": act.id}, view=view)

    def issue_activation(self, user: UserRef, issuer: str, now, ttl: int | None = None, *,
                         during: str | None = None, transaction_id: str | None = None,
                         session_id: str | None = None) -> activation.Activation:
        """A committed one-time activation (a device in another process must find it at once).

        `during`: the user asked for it ("account": the security page; "login": an enrolment),
        audited as `push.activation_issued` with the user as actor, in the same commit.
        `transaction_id`: the login showing it, which must still want it when a phone registers;
        `session_id`: the signed-in session whose security page shows it, which must still be
        live then (not signed out, ended or expired).
        """
        directory.commit()  # a fresh transaction for the write (see begin_challenge)
        act = activation.issue(self.challenges, user, ttl=ttl or self.push_settings.activation_ttl, issuer=issuer,
                               now=now, transaction_id=transaction_id, session_id=session_id)
        if during:
            activation.record_issued(user, act, actor=user.email, actor_id=user.id, during=during)
        directory.commit()
        return act

    def register_device(self, user: UserRef, jwk: dict, name: str, now, *, via: str,
                        details: dict | None = None) -> CredentialInfo:
        """Register a device key for `user` whose right to it another factor has just proven (a recovery
        QR code, a password plus an e-mailed code: plugins/qr_recovery), as `CredentialInfo`.

        Goes through a one-time activation issued and consumed here, so the credential is exactly
        what `POST E/register` creates (one code path for push credentials), and records the same
        one event, `push.device_registered`, with `via` (the way in: "recovery_qr", "recover") and
        `details`. The caller must have verified possession of the private key (a JWS signed with
        it) and commits the credential with that event. Raises ValueError (not a P-256 public JWK;
        name not 1-100 characters), CredentialConflict (this key is already a registered device) or
        AccountDisabled (disabled meanwhile: a disabled account gains no device).
        """
        from idp.factors import AccountDisabled, CredentialConflict
        from idp.factors.registry import current_registry
        from idp_plugins.push.protocol import InvalidRegistration, Registration, device_name, public_jwk, thumbprint

        name = device_name(name)
        if name is None:
            raise ValueError("the device name must be 1-100 characters")
        try:
            key = public_jwk(jwk)
        except InvalidRegistration as exc:
            raise ValueError(str(exc)) from exc
        act = activation.issue(self.challenges, user, ttl=60, issuer=current_registry().settings.issuer, now=now)
        registration = Registration(jwk=key, device_id=thumbprint(key), code=act.code, name=name)
        try:
            device = activation.register(self.challenges, self.store, registration, now=now)
        except activation.DeviceExists as exc:
            raise CredentialConflict("this device key is already registered") from exc
        except activation.ActivationRefused as exc:  # its own 60-second code: refused only for a disabled owner
            raise AccountDisabled("the account is disabled") from exc
        activation.record_registered(user, device, via=via, **(details or {}))
        return device

    def finish_enrolment(self, user, state, response, ctx):
        activation_id = state.get("activation_id") if isinstance(state, dict) else None
        status, device = activation.status(self.challenges, self.store, activation_id, user.id, ctx.now)
        if status == "registered":
            return Enrolled(device)
        if status == "pending":
            return Rejected("not_activated", counts_as_failure=False,
                            message=_l("Scan the code with the app first, then continue."))
        return Rejected("expired", counts_as_failure=False)

    # --- login -----------------------------------------------------------------------------

    def begin_challenge(self, user: UserRef, ctx: AttemptContext) -> Step:
        settings = self.push_settings
        # From the checks to the new challenge, one request per user at a time: parallel requests
        # must not all pass the fatigue limit, nor re-push a login whose push was just denied.
        directory.lock_user(user.id)
        # The login's earlier requests are cancelled *before* the checks: from here to the commit
        # they are locked (PostgreSQL's row locks, SQLite's write lock), so a denial of one either
        # landed first, and `_refusal` sees it, or finds it closed (409). Checked first and
        # cancelled after, a denial in between let a denied login push again. (A device's answer
        # takes the user's lock besides.) A refusal rolls the cancellation back.
        login_challenge.cancel(self.challenges, login_challenge.superseded(self.challenges, user, ctx), ctx.now)
        refused = self._refusal(user, ctx)
        if refused is not None:
            directory.rollback()
            return Step(state={"refused": refused}, view={"refused": refused})
        info = login_challenge.create(self.challenges, user, ctx, digits=settings.digits, ttl=settings.challenge_ttl)
        directory.commit()  # the device's long-poll, maybe in another process, must see it now
        transport = self.transport()
        for device in self.store.list(user):
            transport.notify(device, info)
        context = info.payload["context"]
        view = {"number": info.payload["number"], "digits": settings.digits,
                "application": context["application"], "ip": context["ip"], "user_agent": context["user_agent"],
                "time": unix(ctx.now), "expires_at": unix(info.expires_at),
                "expires_in": settings.challenge_ttl}
        return Step(state={"challenge_id": info.id}, view=view)

    def _refusal(self, user: UserRef, ctx: AttemptContext) -> str | None:
        """Why no push may be sent now, or None."""
        if directory.push_suspended(user.id):
            return "suspended"
        if ctx.transaction_id and directory.any_challenge_status(self.name, ctx.transaction_id, (
                login_challenge.DENIED, login_challenge.FRAUD)):
            # Denied on the phone: this login sends no further request (no re-push after a "no").
            return "denied"
        since = ctx.now - timedelta(seconds=self.push_settings.window)
        if directory.recent_challenge_count(self.name, user.id, since, kind=login_challenge.LOGIN) \
                >= self.push_settings.max_challenges:
            return "too_many_requests"
        return None

    def verify(self, user, state, response, ctx):
        return self.poll(user, state, ctx)

    def poll(self, user, state, ctx):
        if isinstance(state, dict) and state.get("refused"):
            reason = str(state["refused"])
            return Rejected(reason, counts_as_failure=False, message=REFUSAL_MESSAGES.get(reason))
        outcome = login_challenge.outcome(self.challenges, self.store, user, state, ctx.now, ctx.transaction_id,
                                          self.amr)
        if (isinstance(outcome, Verified) or (isinstance(outcome, Rejected) and outcome.reason == "expired")) \
                and directory.push_suspended(user.id):
            # Approved, then a fraud report (this request's or another's, from any of the user's
            # phones) before the login moved on: the report wins; no login completes with push
            # while it is suspended. (A request the report closed says why, not just "expired".)
            return Rejected("suspended", counts_as_failure=False, message=REFUSAL_MESSAGES["suspended"])
        return outcome

    def suspend_push(self, user: UserRef, now) -> list[str]:
        """After a fraud report: suspend push for the user (until an admin clears it), close their
        pending login requests, so none of them can still be approved, and expire the approvals of
        the window that no login has used yet (one approved by mistake, then reported: the report
        wins, and not only while push is suspended: an audit saw such a login complete once an
        admin resumed push; it now sends a new request, which the phone answers afresh). The
        caller commits (and then wakes the pages waiting on the returned challenge ids)."""
        directory.suspend_push(user.id, now)
        closed = []
        for info in self.challenges.pending(user=user.id, now=now):
            if info.payload.get("type") == login_challenge.LOGIN and self.challenges.expire(info.id, now=now):
                closed.append(info.id)
        closed += self.challenges.expire_answered(user=user.id, answered=login_challenge.APPROVED,
                                                  since=now - timedelta(seconds=self.push_settings.window), now=now)
        return closed

    def wait(self, user: UserRef, state: dict, ctx: AttemptContext, timeout: float = 20.0):
        """Like `poll`, but blocks up to `timeout` seconds (at most 25) while the answer is pending.

        For a status endpoint that long-polls (`?wait=`): the page then moves on within
        milliseconds of the answer instead of at its next poll. Woken by the answer's
        publication (in this process, or through Redis in another), else by re-reading the
        database every `waker.fallback_interval` (rolling back between checks: call it with nothing
        uncommitted). Holds a worker thread meanwhile (gthread).
        """
        outcome = self.poll(user, state, ctx)
        challenge_id = state.get("challenge_id") if isinstance(state, dict) else None
        if not isinstance(outcome, Pending) or not isinstance(challenge_id, str):
            return outcome
        deadline = time.monotonic() + min(max(float(timeout), 0.0), 25.0)
        waker = self.waker()
        with waker.listen([challenge_channel(challenge_id)]) as listener:
            while True:
                outcome = self.poll(user, state, replace(ctx, now=utc_now()))
                left = deadline - time.monotonic()
                if not isinstance(outcome, Pending) or left <= 0:
                    return outcome
                directory.rollback()
                listener.wait(min(waker.fallback_interval, left))

    # --- extras ----------------------------------------------------------------------------

    def device_blueprint(self):
        from idp_plugins.push.device import build_blueprint

        return build_blueprint(self)

    def describe(self, credential: CredentialInfo) -> Description:
        return Description(id=credential.id, factor=credential.factor,
                           label=credential.label or label_text(self.label), created_at=credential.created_at,
                           last_used_at=credential.last_used_at,
                           facts={"device": credential.public.get("device_name") or credential.label})

    def on_removed(self, credential: CredentialInfo) -> None:
        """A revoked device's replay rows go; with no device left, the user's pending login
        challenges and activation codes too (an admin's reset after a lost phone must not leave
        a code that registers another)."""
        self.challenges.expire_for_credential(credential.id)
        if self.store.count(credential.user_id) == 0:
            for info in self.challenges.pending(user=credential.user_id):
                if info.payload.get("type") in (login_challenge.LOGIN, activation.ACTIVATION):
                    self.challenges.expire(info.id)

    @classmethod
    def cli_command(cls):
        from idp_plugins.push.cli import push_group

        return push_group(cls.name)
