"""The device-facing endpoints of protocol v1 (docs/push-protocol.md), mounted at /factors/push/.

Four small handlers: register a device, long-poll for challenges, answer one, and (for the
enrolment page) the status of an activation. Every device-authentication failure, whatever
its cause, is the same 401 `invalid_device_request`.
"""
from __future__ import annotations

import math
import time

from flask import Blueprint, jsonify, request

from idp.factors import directory
from idp.factors.bodies import json_object
from idp.factors.ratelimit import spend_request, too_many_attempts
from idp.factors.registry import current_registry
from idp.factors.waiting import one_wait_per

from idp_plugins.push import activation, login_challenge
from idp_plugins.push.protocol import (CLOCK_SKEW, DeviceAuthError, InvalidRegistration, endpoint_base,
                                       read_registration, utc_now, verify_device_token)
from idp_plugins.push.wake import challenge_channel, user_channel



class DeviceThrottled(Exception):
    """An authenticated device beyond `factors.push.device_requests`."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


#: Seconds before a woken long-poll that found nothing looks again (`_pending_for`).
RECHECK_AFTER_WAKE = 0.25


def _error(code: str, status: int):
    return jsonify({"error": code}), status


def _issuer() -> str:
    return current_registry().settings.issuer


def build_blueprint(factor) -> Blueprint:
    bp = Blueprint("push_device", __name__)

    def authenticate():
        """(device credential, verified claims) for this request, or DeviceAuthError."""
        audience = _issuer().rstrip("/") + request.path
        found = {}

        def key_of(device_id: str):
            device = factor.store.find(device_id)
            found["device"] = device
            return device.public.get("jwk") if device else None

        token = verify_device_token(request.headers.get("Authorization"), audience=audience, public_key_of=key_of)
        device = found["device"]
        directory.rollback()  # end the read: the write below then waits its turn (SQLite: no lock upgrade)
        # Per device, before the replay guard's row: a device (or its stolen key) sending as fast as
        # it can would otherwise commit a row per request. Keyed on the id its signature proved.
        retry_after = spend_request(factor.push_settings.device_requests, "push-device", device.lookup_key)
        if retry_after is not None:
            raise DeviceThrottled(retry_after)
        # Replay guard: one row per accepted jti, kept until the token could no longer be accepted.
        if not factor.challenges.spend_once(device.lookup_key, token.jti, until=token.exp + CLOCK_SKEW,
                                            credential_id=device.id):
            raise DeviceAuthError()
        return device, token.claims

    @bp.post("/v1/register")
    def register():
        data = json_object()
        if data is None:
            return _error("invalid_request", 400)
        try:
            registration = read_registration(data.get("registration"),
                                             audience=endpoint_base(_issuer()) + "/register")
        except InvalidRegistration:
            return _error("invalid_request", 400)
        try:
            device = activation.register(factor.challenges, factor.store, registration, now=utc_now(),
                                         max_devices=factor.push_settings.max_devices)
        except activation.ActivationRefused:
            directory.rollback()
            return _error("invalid_activation", 400)
        except activation.AlreadyRegistered as retried:
            # Nothing new: the same answer again, without a second audit event or mail.
            answer = _registered(retried.device, directory.get_user(retried.device.user_id))
            directory.rollback()
            return answer
        except activation.TooManyDevices:
            directory.rollback()  # (the activation code stays unspent: a device revoked, it works)
            return _error("too_many_devices", 409)
        except activation.DeviceExists:
            directory.rollback()
            return _error("device_exists", 409)
        user = directory.get_user(device.user_id)
        activation.record_registered(user, device, via="activation")
        # The device is a second factor from now on, whether or not the enrolment page that
        # showed its code is ever finished: its event's commit tells the owner's mailbox now
        # (idp.security_notices).
        directory.commit()
        return _registered(device, user)

    def _registered(device, user):
        return jsonify({"device_id": device.lookup_key, "user": user.username, "issuer": _issuer(),
                        "endpoint": endpoint_base(_issuer())}), 201

    @bp.get("/v1/challenges")
    def pending():
        try:
            device, _claims = authenticate()
        except DeviceAuthError:
            return _error("invalid_device_request", 401)
        except DeviceThrottled as throttled:
            return too_many_attempts(throttled.retry_after)
        try:
            wait = float(request.args.get("wait", "0"))
        except ValueError:
            wait = 0.0
        if not math.isfinite(wait):  # "nan" parses, and a NaN deadline is never reached
            wait = 0.0
        wait = min(max(wait, 0.0), float(factor.push_settings.long_poll_max_wait))
        with one_wait_per(("push-device", device.id)) as may_wait:  # another wait of this device's: none
            items = _pending_for(device, wait if may_wait else 0.0)
        if items is None:
            return _error("invalid_device_request", 401)
        return jsonify({"challenges": items, "server_time": int(time.time())})

    def _still_live(device) -> bool:
        """Is the device still registered (a fresh read of its credential)? A long-poll is
        authenticated once but lasts up to 20 s: a phone revoked meanwhile must not be handed the
        user's next login requests (application, browser address, user agent)."""
        live = factor.store.find(device.lookup_key)
        return live is not None and live.id == device.id

    def _pending_for(device, wait: float):
        """The user's pending login challenges as the device sees them, as soon as there are any or
        when `wait` is over; None when the device was revoked meanwhile (the uniform 401)."""
        deadline = time.monotonic() + wait
        waker = factor.waker()
        woken = False
        with waker.listen([user_channel(device.user_id)]) as listener:
            while True:
                # Only the requests their login still waits on: one that finished with another
                # method, switched to one or expired no longer asks the phone anything.
                items = [login_challenge.public_view(c)
                         for c in factor.challenges.pending(user=device.user_id, awaited=True)
                         if c.payload.get("type") == login_challenge.LOGIN]
                # Read after the challenges, on every pass: a revocation committed before this read
                # withholds them; one committed after it came after this request was answered.
                if not _still_live(device):
                    directory.rollback()
                    return None
                left = deadline - time.monotonic()
                if items or left <= 0:
                    return items
                directory.rollback()  # see other processes' commits; give the connection back meanwhile
                # Woken, and nothing listed: the login's pages name push as the login's method before
                # its request is stored (idp.login.steps.second_factor._begin), but a login that
                # records it only after the phones are woken would be missed until the fallback
                # interval. A cheap guard: look again shortly.
                pause = RECHECK_AFTER_WAKE if woken else waker.fallback_interval
                woken = listener.wait(min(pause, left))

    @bp.post("/v1/challenges/<challenge_id>/answer")
    def answer(challenge_id: str):
        try:
            device, claims = authenticate()
        except DeviceAuthError:
            return _error("invalid_device_request", 401)
        except DeviceThrottled as throttled:
            return too_many_attempts(throttled.retry_after)
        decision, number = claims.get("decision"), claims.get("number")
        if claims.get("challenge") != challenge_id or decision not in login_challenge.DECISIONS \
                or (decision == "approve" and not isinstance(number, str)):
            return _error("invalid_answer", 400)
        info = factor.challenges.get(challenge_id)
        if info is None or info.user_id != device.user_id or info.payload.get("type") != login_challenge.LOGIN:
            return _error("unknown_challenge", 404)
        status, reason = login_challenge.decide(info, decision, number)
        directory.rollback()  # end the read before the conditional UPDATE (see authenticate)
        # The answer takes the user's lock, as `PushFactor.begin_challenge` does from its "was this
        # login denied?" check to the new challenge: a denial and a re-push of the same login run
        # one after the other, so either the re-push sees the denial and sends nothing, or it
        # supersedes the challenge first and this answer finds it closed.
        directory.lock_user(device.user_id)
        now = utc_now()
        answered = factor.challenges.answer(
            challenge_id, status, now=now, commit=False, awaited=True,  # its login must still wait on push
            payload={**info.payload, "reason": reason, "device_credential_id": device.id,
                     "device_name": device.label})
        if answered is None:
            now_closed = factor.challenges.get(challenge_id)
            earlier = _own_answer(now_closed, device)
            if status == login_challenge.FRAUD and earlier == {"status": login_challenge.FRAUD}:
                # This device's own report, sent again (its reply lost): recorded and acted on
                # once already; a second event, suspension and mail would be the same report twice.
                directory.rollback()
                return jsonify({"error": "challenge_closed", "reported": True, "answered": earlier}), 409
            if status == login_challenge.FRAUD and device.id in _reported_by(now_closed):
                # The same, for its report on a request that was closed already (below): told again
                # what its first copy was told.
                directory.rollback()
                return jsonify({"error": "challenge_closed", "reported": True}), 409
            # One still open (pending, unexpired) belongs to a login that no longer waits on it
            # (finished with another method, switched to one, expired): it closes now, and is
            # reported so however long ago it came, as it was when this answer claimed it (a
            # `window` shorter than `challenge_ttl` must not drop a report on a live request).
            closed_now = (status == login_challenge.FRAUD and info.expires_at > now
                          and factor.challenges.expire(challenge_id, now=now))
            if closed_now or (status == login_challenge.FRAUD
                              and login_challenge.recent(info, now, factor.push_settings.window)):
                # Closed a moment ago (superseded by a re-push, expired, answered on another phone):
                # the user still says "this was not me", which matters more than the request's state.
                factor.challenges.expire(challenge_id, now=now)  # (one past its time, still marked pending)
                closed = factor.challenges.get(challenge_id) or info
                # Which devices reported it (their retries are not reported again): read and written
                # under the user's lock, as every answer is.
                factor.challenges.note(challenge_id, {**closed.payload,
                                                      REPORTED_BY: sorted({*_reported_by(closed), device.id})})
                woken = _record_refusal(factor, device, closed, status, reason, now, closed_as=closed.status)
                directory.commit()
                _wake(woken)
                return jsonify({"error": "challenge_closed", "reported": True}), 409
            body = {"error": "challenge_closed"}
            if earlier is not None:
                body["answered"] = earlier
            directory.rollback()
            return jsonify(body), 409
        factor.store.touch(device.id, now=now)
        woken = [challenge_id]
        if status != login_challenge.APPROVED:
            woken += _record_refusal(factor, device, answered, status, reason, now)
        directory.commit()  # the answer, its audit event and a fraud report's suspension: together
        _wake(woken)
        return jsonify(_answer_body(status, reason))

    def _wake(challenge_ids) -> None:
        """Tell the login pages waiting on these challenges (after the commit they must see)."""
        waker = factor.waker()
        for woken_id in challenge_ids:
            waker.notify(challenge_channel(woken_id))

    @bp.get("/v1/activation/<activation_id>")
    def activation_status(activation_id: str):
        """For the enrolment page's script: has a device registered with this activation yet?"""
        state, _device = activation.status(factor.challenges, factor.store, activation_id, None, utc_now())
        return jsonify({"status": state})

    @bp.record_once
    def _exempt_from_csrf(setup_state) -> None:
        # Devices authenticate with signed tokens, not cookies: CSRF does not apply.
        csrf = setup_state.app.extensions.get("csrf")
        if csrf is not None:
            for view in (register, pending, answer):
                csrf.exempt(view)

    return bp


def _answer_body(status: str, reason: str | None) -> dict:
    body = {"status": status}
    if status == login_challenge.DENIED:
        body["reason"] = reason
    return body


# A closed request's payload member: the ids of the user's devices that reported it as fraud.
REPORTED_BY = "fraud_reported_by"


def _reported_by(closed) -> set[int]:
    found = closed.payload.get(REPORTED_BY) if closed is not None else None
    return {i for i in found if isinstance(i, int)} if isinstance(found, list) else set()


def _own_answer(closed, device) -> dict | None:
    """What this device's own earlier answer to a closed challenge recorded, as its 200 said it: a
    phone that sends an answer again (its first one's reply lost on the way, with a new token) is
    told that its answer counted, not only that the request is closed. None for a challenge closed
    otherwise (expired, cancelled, answered by another device)."""
    if closed is None or closed.payload.get("device_credential_id") != device.id:
        return None
    if closed.status not in (login_challenge.APPROVED, login_challenge.DENIED, login_challenge.FRAUD):
        return None
    return _answer_body(closed.status, str(closed.payload.get("reason") or "denied"))


def _record_refusal(factor, device, challenge, status: str, reason: str, now, closed_as: str | None = None) -> list[str]:
    """Denials and fraud reports are audit events for the org's admins; fraud suspends push at once,
    whether or not the (possibly attacker's) browser ever comes back, and closes the user's other
    pending login requests. In the caller's transaction; returns the ids of the challenges it closed
    (whose waiting pages the caller wakes after its commit). `closed_as`: the status of a challenge
    that was no longer pending when the report came (it is reported all the same)."""
    user = directory.get_user(device.user_id)
    if user is None:  # pragma: no cover - user deleted meanwhile
        return []
    context = challenge.payload.get("context") or {}
    details = {"credential_id": device.id, "device_name": device.label, "reason": reason,
               "application": context.get("application"), "ip": context.get("ip")}
    if closed_as is not None:
        details["challenge_status"] = closed_as
    if status == login_challenge.FRAUD:
        closed = factor.suspend_push(user, now)
        directory.audit("push.fraud_reported", user, actor=user.email, actor_id=user.id, details=details)
        return closed
    directory.audit("push.denied", user, actor=user.email, actor_id=user.id, details=details)
    return []
