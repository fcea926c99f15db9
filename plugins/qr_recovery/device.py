"""Device-facing endpoints, mounted at /factors/qr_recovery/ (docs/recovery.md):

    POST /redeem            a recovery QR code + the new device's key -> a push credential
    POST /personal/start    e-mail + password -> a 6-digit code sent to the verified e-mail
    POST /personal/finish   the code + the new device's key -> a push credential

Every request that registers a key is a JWS signed by that key (signed.py), so the device
proves it holds the private half. Answers are JSON; refusals are `{"error": CODE}` with a
4xx status, never a 500, and nothing is written on a refusal except the spent code or
counted guess that the refusal is about.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from idp.factors import AccountDisabled, CredentialConflict, FactorNotFound, UserRef, directory
from idp.factors.bodies import json_object
from idp.factors.ratelimit import per_address_limit, too_many_attempts
from idp.factors.registry import current_registry

from idp_plugins.qr_recovery import issuing, personal, signed
from idp_plugins.qr_recovery.secret import endpoint_base

# Refusals of a code whose secret the caller does hold: saying which is harmless and helps.
_STATUS_ERRORS = {issuing.USED: "recovery_code_used", issuing.EXPIRED: "recovery_code_expired",
                  issuing.REVOKED: "recovery_code_revoked"}


def _error(code: str, status: int, **extra):
    return jsonify({"error": code, **extra}), status


def _issuer() -> str:
    return current_registry().settings.issuer


def _push():
    try:
        return current_registry().get("push")
    except FactorNotFound:
        return None


def _utcnow():
    from idp_plugins.qr_recovery.factor import _utcnow

    return _utcnow()


def _registered(user: UserRef, device):
    """Committed with its one audit event (`push.device_registered`, written by the push factor,
    whose commit mails the user: idp.security_notices), and the answer."""
    directory.commit()
    issuer = _issuer()
    return jsonify({"device_id": device.lookup_key, "user": user.username, "issuer": issuer,
                    "endpoint": issuer.rstrip("/") + "/factors/push/v1"}), 201


def build_blueprint(factor) -> Blueprint:
    bp = Blueprint("qr_recovery_device", __name__)

    def read_signed(path: str) -> signed.SignedRequest:
        data = json_object()
        token = data.get("request") if data is not None else None
        return signed.read(token, audience=endpoint_base(_issuer()) + path)

    def spend_jti(req: signed.SignedRequest) -> bool:
        """Record the request's jti for its key, committed at once, until it could no longer be
        accepted anyway; False when that key sent it before: a replay (of a wrong code's guess,
        or of a redemption refused a moment ago), whatever happens next."""
        return factor.challenges.spend_once(req.device_id, req.claims["jti"],
                                            until=float(req.claims["exp"]) + signed.CLOCK_SKEW)

    def new_device_request(path: str):
        """(request, device name, push factor, None), or (None, None, None, an error response) when the
        signed request is malformed or push is not installed."""
        try:
            req = read_signed(path)
        except signed.InvalidSignedRequest:
            return None, None, None, _error("invalid_request", 400)
        name = signed.device_name(req.claims)
        if name is None or not spend_jti(req):
            return None, None, None, _error("invalid_request", 400)
        push = _push()
        if push is None:
            return None, None, None, _error("push_unavailable", 503)
        return req, name, push, None

    @bp.post("/redeem")
    @per_address_limit  # each request, right or wrong, stores its jti before anything else is read
    def redeem():
        req, name, push, refused = new_device_request("/redeem")
        if refused is not None:
            return refused
        if push.store.find(req.device_id) is not None:
            # Before the code's state: a retry whose 201 was lost (the code it spent now "used")
            # is told the key is registered, as /personal/finish tells it, not that the code is gone.
            return _error("device_exists", 409)  # (and before spending the code)
        now = _utcnow()
        username = req.claims.get("user")
        user = directory.find_user_by_email(username) if isinstance(username, str) and len(username) <= 320 else None
        status, credential = issuing.lookup(factor.store, factor.pepper(), req.claims.get("secret"), now, user)
        if status == issuing.VALID and user is None:
            user = directory.get_user(credential.user_id)
        if status != issuing.VALID:
            if credential is not None:  # a real code, used, expired or revoked: whoever sent it holds its secret
                owner = user or directory.get_user(credential.user_id)
                if owner is not None:
                    directory.audit("recovery_qr.redeem_refused", owner,
                                    details={"credential_id": credential.id, "status": status,
                                             "device_id": req.device_id, "ip": request.remote_addr})
                    directory.commit()
            return _error(_STATUS_ERRORS.get(status, "invalid_recovery_code"), 410 if status in _STATUS_ERRORS else 400)
        if not directory.factor_allowed(user, push.name):  # (the code still works at a login)
            return _error("push_not_allowed", 403)
        # The user's row first, as a login, a reset and a disable lock it before the rows they
        # change: taken after the code's, PostgreSQL could deadlock the two.
        if not directory.hold_enabled(user):  # a code issued before the account was disabled opens nothing
            directory.rollback()
            return _error("account_disabled", 403)
        if not issuing.consume(factor.store, credential, now):
            directory.rollback()
            return _error("recovery_code_used", 410)
        try:
            device = push.register_device(user, req.jwk, name, now, via="recovery_qr",
                                          details={"recovery_qr_id": credential.id})
        except CredentialConflict:
            directory.rollback()
            return _error("device_exists", 409)
        except AccountDisabled:
            directory.rollback()
            return _error("account_disabled", 403)
        except ValueError:  # a key or name push refuses (the code is not spent: rolled back)
            directory.rollback()
            return _error("invalid_request", 400)
        # The code's own change (spent), beside the device's: each has its one event.
        directory.audit("recovery_qr.used", user, actor=user.email, actor_id=user.id,
                        details={"credential_id": credential.id, "use": "device", "device_name": device.label})
        return _registered(user, device)

    @bp.post("/personal/start")
    @per_address_limit  # a password guess: the login form's own request rate per address
    def personal_start():
        if not factor.qr_settings.personal_recovery:
            return _error("personal_recovery_disabled", 403)
        push = _push()
        if push is None:
            return _error("push_unavailable", 503)
        data = json_object()
        if data is None:
            return _error("invalid_request", 400)
        try:
            started = personal.start(factor, data.get("email"), data.get("password"),
                                     remote_addr=request.remote_addr, now=_utcnow(), push=push)
        except personal.StartRefused as exc:
            if exc.retry_after:
                return too_many_attempts(exc.retry_after)
            return _error(exc.error, exc.status)
        return jsonify({"recovery_id": started.recovery_id, "expires_at": issuing.unix(started.expires_at),
                        "sent_to": started.sent_to}), 200

    @bp.post("/personal/finish")
    @per_address_limit  # (as redeem; the code's own guesses are counted per code besides)
    def personal_finish():
        if not factor.qr_settings.personal_recovery:
            return _error("personal_recovery_disabled", 403)
        req, name, push, refused = new_device_request("/personal/finish")
        if refused is not None:
            return refused
        if push.store.find(req.device_id) is not None:
            return _error("device_exists", 409)
        now = _utcnow()
        try:
            user = personal.finish(factor, req.claims.get("recovery_id"), req.claims.get("code"), now=now, push=push)
        except personal.FinishRefused as exc:
            extra = {"tries_left": exc.tries_left} if exc.tries_left is not None else {}
            return _error(exc.error, exc.status, **extra)
        try:
            device = push.register_device(user, req.jwk, name, now, via="recover")
        except CredentialConflict:
            directory.rollback()
            return _error("device_exists", 409)
        except AccountDisabled:
            directory.rollback()
            return _error("account_disabled", 403)
        except ValueError:  # a key or name push refuses
            directory.rollback()
            return _error("invalid_request", 400)
        return _registered(user, device)

    @bp.record_once
    def _exempt_from_csrf(setup_state) -> None:
        # Devices sign their requests with their key; there is no cookie to forge.
        csrf = setup_state.app.extensions.get("csrf")
        if csrf is not None:
            for view in (redeem, personal_start, personal_finish):
                csrf.exempt(view)

    return bp
