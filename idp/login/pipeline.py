"""The login pipeline's order, on one screen: where a request enters, what comes next, how it ends.

    /authorize ─ valid ─┬─ usable SSO session ──────────────────────┐
                        └─ identify (password) ─ policy decides ─┬─ enrol ─┐
                                                                 ├─ second_factor ─┤
                                                                 └────────────────┤
                                                    consent (third-party clients) ─┤
                                                                            done: code issued
    /device ─ user code confirmed ─ (the same steps) ─ done: the device approved (start_device)

`idp/login/steps/*` each handle one state; this module only routes between them.
"""
from __future__ import annotations

import re
import time

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.util import scope_to_list
from flask import current_app, redirect, url_for
from sqlalchemy import select

from idp import audit
from idp.db import db
from idp.login import gate, session as login_session, snapshot, transaction, user as login_user
from idp.login.outcome import LoginOutcome, outcome_from_steps
from idp.login.transaction import State, TransactionRow
from idp.login.user import UserLike
from idp.models import ConsentGrant
from idp.policy.decide import ACR_MFA
from idp.oidc.adapters import ClientRecord
from idp.oidc import response_mode
from idp.oidc.server import with_issuer
from idp.ops import metrics
from idp.policy.decide import acr_for


def _settings():
    return current_app.extensions["idp.settings"]


def _prompts(params: dict) -> set[str]:
    return set((params.get("prompt") or "").split())


def login_client(params: dict) -> ClientRecord | None:
    """The login's client's record, from the token endpoint's per-process cache
    (idp.oidc.server); None for a login without one (the provider's own pages) or a client
    removed meanwhile."""
    from idp.oidc.server import client_record

    return client_record(params["client_id"]) if "client_id" in params else None


def normalise_scope(params: dict, client) -> dict:
    """The scopes this login is about: those the client may have (what the code will carry; the
    consent page shows and remembers no others, so a request cannot fill it with made-up
    scope names).

    A third-party client's offline_access stays: like any other scope, it is granted only with
    the user's consent (OIDC Core 11: "the OP MUST always obtain consent to returning a Refresh
    Token"), given on this login's consent page, which lists it, or remembered from an earlier
    one that did (the "other conditions" under which Core 11 lets a request without
    prompt=consent have it). A request whose consent page cannot show (prompt=none) loses it
    instead unless remembered: `_without_unconsented_offline_access`."""
    scopes = scope_to_list(params.get("scope") or "") or []
    allowed = set((client.scope or "").split())
    kept = list(dict.fromkeys(s for s in scopes if s in allowed))  # each once, in order
    return dict(params, scope=" ".join(kept)) if kept != scopes else params


def _without_unconsented_offline_access(params: dict, client, user_id: int) -> dict:
    """For prompt=none: `params` less a third-party client's offline_access when the user's
    remembered consent does not cover it. The tokens come without a refresh token, as they would
    have before the user was ever asked, rather than the whole request failing with
    consent_required (a single-page app's silent renewal often keeps offline_access in its scope)."""
    scopes = scope_to_list(params.get("scope") or "") or []
    if client.first_party or "offline_access" not in scopes:
        return params
    remembered = db.session.scalar(select(ConsentGrant.scope).where(ConsentGrant.user_id == user_id,
                                                                    ConsentGrant.client_id == client.client_id))
    if remembered is not None and "offline_access" in remembered.split():
        return params
    return dict(params, scope=" ".join(s for s in scopes if s != "offline_access"))


def session_is_enough(params: dict, sso, user: UserLike | None) -> tuple[bool, str | None]:
    """Can this signed-in session answer the request without a login? (False, error for prompt=none)."""
    if sso is None or user is None:
        return False, "login_required"
    if _prompts(params) & {"login", "select_account"}:  # select_account: the login form, for any account
        return False, "login_required"
    if params.get("max_age") is not None:
        max_age = gate.max_age_of(params)
        if max_age is None or sso.auth_time + max_age < time.time():
            return False, "login_required"
    error = gate.session_shortfall(user, params, sso)
    return (error is None), error


def consent_needed(authz: dict, client, user_id: int, *, by_session: bool = False) -> bool:
    """Does this login need the consent page? `by_session`: this browser's session answers it,
    with no page of its own (no password or factor typed in this login).

    A first-party client never asks for consent, but one whose receiver is not proven (a native
    app's loopback port or private-use scheme, `_receiver_proven`) is not answered by a session
    without the user's say either: any program on the device could start that login with the
    organization's own app's client_id, and its code would reach it unseen (RFC 8252 8.6: no
    such request processed automatically without user consent or interaction). The consent
    page is that interaction (and prompt=none gets consent_required); a login in which the user
    typed their password is one already."""
    if client.first_party:
        return by_session and not _receiver_proven(authz, client)
    params = authz["params"]
    if "consent" in _prompts(params) or not _receiver_proven(authz, client):
        return True
    remembered = db.session.scalar(select(ConsentGrant).where(ConsentGrant.user_id == user_id,
                                                              ConsentGrant.client_id == client.client_id))
    wanted = set(scope_to_list(params.get("scope") or "") or [])
    return remembered is None or not wanted <= set(remembered.scope.split())


def _receiver_proven(authz: dict, client) -> bool:
    """Whether the code can reach only the client the user consented to (RFC 8252 8.6).

    A public client proves nothing at the token endpoint: the code goes wherever its redirect
    URI leads. An https URI is the client's own origin (a web app, or a native app's claimed
    link); but any program on the device can listen on a loopback port or register a private-use
    scheme (`com.example.app:/callback`, which registration allows a public client only:
    idp.oidc.private_use_schemes) and start a request with a native app's client_id. So for
    those a remembered consent lets nothing through silently: the user sees the consent page at
    every login, where the application's name tells them what they start (and prompt=none gets
    consent_required).
    A device's login (no redirect URI) is already an interaction: the user typed its code."""
    if not client.public:
        return True
    redirect_uri = authz.get("redirect_uri")
    return redirect_uri is None or redirect_uri.startswith("https://")


def _consent_withdrawn(params: dict, user_id: int, client: ClientRecord | None) -> bool:
    """Whether a third-party client's login, about to issue its code, lacks the consent it
    needs: the remembered one it was let through with (or the one given at this login's consent
    page, in this transaction) no longer covers its scopes. Asked with the user's row held.
    `client`: the login's (`login_client`), None for none."""
    if client is None or client.first_party:
        return False  # (a client removed meanwhile: the code's validation refuses it)
    remembered = db.session.scalar(select(ConsentGrant.scope).where(ConsentGrant.user_id == user_id,
                                                                    ConsentGrant.client_id == client.client_id))
    wanted = set(scope_to_list(params.get("scope") or "") or [])
    return remembered is None or not wanted <= set(remembered.split())


def next_state(authz: dict, steps_done: list[dict], user: UserLike) -> State:
    """After identification or a finished factor: what does this login still need?"""
    params = authz["params"]
    pending = gate.pending_second_factor(user, params, steps_done)
    if pending is not None:
        return pending
    if "client_id" in params:
        client = login_client(params)
        if client is None:
            # Removed while this login ran: `idp client remove` ends the logins it finds, but one
            # begun from a worker's cached copy of the client (tokens.client_cache_ttl) gets here.
            return State.CANCELLED
        if consent_needed(authz, client, user.id):
            return State.CONSENT
    return State.DONE


def redirect_to(handle_raw: str):
    return redirect(url_for("login.step", handle=handle_raw))


def error_redirect(grant, error: str, description: str | None = None):
    server = current_app.extensions["idp.oauth_server"]
    err = OAuth2Error(description=description, redirect_uri=grant.redirect_uri)
    err.error = error
    err.state = grant.request.payload.state
    return server.handle_error_response(grant.request, err)


# prompt values this provider honours (discovery's prompt_values_supported); select_account is
# answered with the login form, where any account can sign in.
PROMPTS = frozenset({"none", "login", "consent", "select_account"})


def unsupported(args) -> tuple[str, str] | None:
    """(error, description) for what the request asks and this provider does not do (OIDC Core
    3.1.2.1 and 3.1.2.6), rather than ignoring it and answering something else. A parameter sent
    empty is one not sent (RFC 6749 3.1)."""
    # (A `request` object or a pushed request's `request_uri` was unpacked before:
    # idp.oidc.request_object, idp.oidc.pushed_requests. Neither holds another.)
    if response_mode.of(args) not in response_mode.MODES:
        return "invalid_request", "response_mode may be query or form_post."
    prompts = set((args.get("prompt") or "").split())
    if not prompts <= PROMPTS:
        return "invalid_request", "prompt may hold only none, login, consent and select_account."
    if "none" in prompts and len(prompts) > 1:
        return "invalid_request", "prompt=none cannot be combined with other values."
    if args.get("dpop_jkt") and not _JWK_THUMBPRINT.fullmatch(args["dpop_jkt"]):
        return "invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint (43 base64url characters)."
    return None


# RFC 7638 with SHA-256, base64url without padding: what `dpop_jkt` holds (RFC 9449 10).
_JWK_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


def _hinted_subject(args) -> str | None:
    """The `sub` of the request's id_token_hint when it is an ID token of ours (an expired one
    will do), else None."""
    from idp.oidc.keys import id_token_subject

    hint = args.get("id_token_hint")
    return id_token_subject(hint) if hint else None


def start(grant, args) -> object:
    """Entry from /authorize once Authlib validated the request."""
    client = grant.request.client.row
    refused = unsupported(args)
    if refused is not None:
        return error_redirect(grant, *refused)
    unreachable = response_mode.unreachable(args, grant.redirect_uri)
    if unreachable is not None:
        return error_redirect(grant, "invalid_request", unreachable)
    params = normalise_scope(snapshot.capture(args), client)
    if params.get("max_age") is not None and gate.max_age_of(params) is None:
        return error_redirect(grant, "invalid_request", "max_age must be a whole number of seconds.")
    sso = login_session.current_session()
    user = login_session.current_user()
    enough, why = session_is_enough(params, sso, user)
    hinted = _hinted_subject(args)
    if enough and args.get("id_token_hint") and hinted != user.public_id:
        # The client expects someone else (OIDC Core 3.1.2.1): sign in again, or login_required.
        enough, why = False, "login_required"
    prompts = _prompts(params)
    authz = {"params": params, "client_name": client.name, "redirect_uri": grant.redirect_uri}
    if hinted is not None:
        authz["hinted_sub"] = hinted  # whoever signs in must be this user (finish)
    needs_consent = None
    if "none" in prompts:
        if not enough:
            return error_redirect(grant, why or "login_required")
        authz["params"] = params = _without_unconsented_offline_access(params, client, user.id)
        needs_consent = consent_needed(authz, client, user.id, by_session=True)
        if needs_consent:
            return error_redirect(grant, "consent_required")
    return _begin(authz, client, sso if enough else None, user, needs_consent)


def start_device(device, client, *, another_account: bool = False) -> object:
    """Entry from /device once the person confirmed the device's user code (idp.login.device_pages):
    a login for the device's client and scope, which ends by approving the device
    (idp.oidc.device_flow) rather than by issuing a code. The device asked for no prompt, max_age
    or acr_values: the login is what the client and the 2FA policy need, and this browser's
    session answers it when that is enough (`device_signs_in_as`), unless the person chose
    `another_account`. offline_access from a third-party client is asked for at the consent
    page every time, remembered or not: a device's refresh token lives on in a room the person
    may only be passing through (a hotel's TV), so they are told each time."""
    params = _device_params(device, client)
    sso, user = login_session.current_session(), login_session.current_user()
    enough = not another_account and session_is_enough(params, sso, user)[0]
    authz = {"params": params, "client_name": client.name, "device": device.id}
    return _begin(authz, client, sso if enough else None, user)


def device_signs_in_as(device, client) -> UserLike | None:
    """The user this browser's session would sign the device in as, with no login page (its
    session answers the device's login), or None: what the confirmation page names, so that
    on a shared computer nobody signs their TV in as whoever used the browser before."""
    sso, user = login_session.current_session(), login_session.current_user()
    return user if session_is_enough(_device_params(device, client), sso, user)[0] else None


def _device_params(device, client) -> dict:
    params = {"client_id": client.client_id, "scope": device.scope}
    if "offline_access" in device.scope.split() and not client.first_party:
        params["prompt"] = "consent"
    return normalise_scope(params, client)


def _begin(authz: dict, client, sso, user: UserLike | None, needs_consent: bool | None = None):
    """Begin the login transaction of `authz`: answered by `sso`, this browser's session, when
    given (straight to the end, or to consent when the client needs it: `needs_consent` if the
    caller knows), else from the password."""
    binding = login_session.browser_binding()
    if sso is None:
        return redirect_to(transaction.begin(authz, binding).raw)
    steps = [{"method": "sso", "amr": list(sso.amr), "at": int(time.time()),
              "credential_ids": list(sso.credential_ids or ())}]
    if needs_consent is None:
        needs_consent = consent_needed(authz, client, user.id, by_session=True)
    handle = transaction.begin(dict(authz, auth_time=sso.auth_time, sid=sso.sid), binding,
                               state=State.CONSENT if needs_consent else State.IDENTIFY,
                               user_id=user.id, steps_done=steps)
    if not needs_consent:
        return finish(handle.row, expected=State.IDENTIFY)
    return redirect_to(handle.raw)


def restart_from_password(authz: dict):
    """The same authorization request as a new login from the password page (the consent page's
    "Use another account" for a login a session answered): what that session gave it (its
    auth_time and sid) is left out."""
    fresh = {key: value for key, value in authz.items() if key not in ("auth_time", "sid")}
    return redirect_to(transaction.begin(fresh, login_session.browser_binding()).raw)


MAX_NEXT_PATH = 2048


def start_internal(next_path: str, *, fresh: bool = False, second_factor: bool = False):
    """A login for the provider's own pages (the security page): no client, no code, back to `next_path`.

    `fresh` demands a full login even when a session exists (recent-login checks); `second_factor`
    asks for a second factor as `acr_values` would, whatever the user's 2FA policy: one the user
    holds, proven, and nothing more (gate.REAUTHENTICATION: no enrolment, no switch of kind).
    """
    if (not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path
            or not next_path.isprintable() or len(next_path) > MAX_NEXT_PATH):
        # Local paths only: no open redirect (control characters: "/\t/evil.example"); and no
        # page's own address is this long (anyone may start such a login: its row stores it).
        next_path = "/"
    params = {"prompt": "login"} if fresh else {}
    if second_factor:
        params["acr_values"] = ACR_MFA
        params[gate.REAUTHENTICATION] = "1"
    authz = {"params": params, "client_name": "", "internal": True, "next": next_path}
    handle = transaction.begin(authz, login_session.browser_binding())
    return redirect_to(handle.raw)


def proceed(row: TransactionRow, handle_raw: str, user: UserLike, from_state: State, version: int,
            steps_done: list[dict], events: tuple[dict, ...] = ()):
    """Record the steps done and move past `from_state` to whatever the login needs next.

    `events` (keyword arguments of `audit.record_now`) describe the step just done; they commit
    with the move, or not at all when a parallel submission moved the transaction first: what
    the step did (a code spent, a password rehashed) rolled back with the move, and an event
    would tell of a change that did not happen (a recovery code "used" that still works).
    """
    target = next_state(row.authz_request, steps_done, user)
    patch = {"steps_done": steps_done, "user_id": user.id, "factor_name": None, "factor_state": None}
    if target == State.SECOND_FACTOR:
        from idp.login.steps import second_factor

        patch.update(second_factor.early_challenge(row, user))
    if target == State.DONE:
        return finish(row, expected=from_state, version=version, events=events, user=user, **patch)
    if not transaction.advance(row, from_state, version, target, commit=False, **patch):
        return redirect_to(handle_raw)  # (rolled back: the page shows where the login is now)
    _record(events)
    db.session.commit()
    if target == State.CANCELLED:  # its client is gone: nothing to sign in to
        return redirect(url_for("login.expired"))
    return redirect_to(handle_raw)


def _record(events: tuple[dict, ...]) -> None:
    audit.record_all_now(list(events))


def finish(row: TransactionRow, expected: State, version: int | None = None, events: tuple[dict, ...] = (),
           user: UserLike | None = None, **patch):
    """Issue the code exactly once: the transition into `done` is the guard.

    The transition, the new session, the audit events and the code commit together (one
    transaction): a second submission waits for the first and then matches nothing. `user`:
    the transaction's user when the caller has already read it.
    """
    version = row.version if version is None else version
    sso_sid = row.authz_request.get("sid")
    if sso_sid is not None and not login_session.holds(sso_sid):
        # An SSO session answered this login, and it has ended since (signed out, or ended from
        # another device: idp.sessions.end) while the consent page waited: no code from it.
        _record(events)
        db.session.commit()
        return redirect(url_for("login.expired"))
    # The user's row first, then the transaction's (the order idp.users.sign_out_everywhere
    # locks them in): a login disabled or signed out everywhere (a new password) since it began
    # ends here, its transaction having been expired; one that got here first is ended by it.
    user_id = patch.get("user_id") or row.user_id  # the patch names it on the first move
    params = row.authz_request["params"]
    client = login_client(params)
    signs_in_with = _stamped_at_hold(row, patch, sso_sid, client)
    if signs_in_with is not None:  # its stamp of the user's row is the hold (one statement)
        held = gate.record_login_holding(user_id, signs_in_with)
    else:
        held = login_user.hold_for_sign_in(user_id)
    if held and sso_sid is not None and not login_session.hold_live(sso_sid):
        # Ended since this request began, a sign-out in another tab at this very moment (the
        # session's row is now held: a sign-out after this waits for the code, and withdraws it).
        return _ended_meanwhile(row, events, "login_required", "The session has ended.")
    if held and _consent_withdrawn(params, user_id, client):
        # The user removed this application's access at this very moment (idp.consents.withdraw,
        # which waits for the user's row): the consent this login relied on is gone.
        return _ended_meanwhile(row, events, "consent_required", "The user's consent was withdrawn.")
    if held and login_user.signed_out_since_password(patch.get("steps_done", row.steps_done), user_id):
        # Its password checked before a sign-out everywhere committed, which could not expire this
        # transaction: it did not name its user yet (one that did is expired by it, and its move
        # below matches nothing). Rolled back as a disabled user's.
        held = False
    if not held:
        db.session.rollback()
    if not held or not transaction.advance(row, expected, version, State.DONE, commit=False, **patch):
        # Rolled back, with what the step did: no event of it either (see `proceed`).
        return redirect(url_for("login.expired"))
    if user is None:
        user = login_user.load(row.user_id)
    steps = [step for step in row.steps_done if step.get("method") != "sso"]
    if steps:
        outcome = _sign_in(user, steps, client_id=params.get("client_id"), events=events)
    else:  # an SSO session answered: it keeps what it proved, and when
        _record(events)
        amr = row.steps_done[0]["amr"]
        outcome = LoginOutcome(auth_time=row.authz_request["auth_time"], amr=tuple(amr), acr=acr_for(amr),
                               sid=row.authz_request.get("sid"),
                               credential_ids=tuple(row.steps_done[0].get("credential_ids") or ()))
    if row.authz_request.get("internal"):
        db.session.commit()
        return redirect(row.authz_request["next"])
    if row.authz_request.get("device") is not None:
        return approve_device(row.authz_request["device"], user, outcome)
    hinted = row.authz_request.get("hinted_sub")
    if hinted is not None and hinted != user.public_id:
        # The client named another user in id_token_hint: this browser is signed in as whoever
        # signed in, and the client is told its user is not (OIDC Core 3.1.2.1: login_required).
        db.session.commit()
        return error_to_client(row.authz_request, "login_required",
                               "Another user signed in than the one the id_token_hint names.")
    return issue_code(params, user, outcome, row.authz_request["redirect_uri"])


def _stamped_at_hold(row: TransactionRow, patch: dict, sso_sid: str | None,
                     client: ClientRecord | None) -> tuple[str, ...] | None:
    """The `amr` of a fresh sign-in whose stamp of the user's row (gate.record_login) may be
    written by the very statement that holds that row in `finish`; None when the stamp must wait
    for `_sign_in`. So only where nothing between the hold and the sign-in can end the login
    and commit (`_ended_meanwhile`): no session it stands on (`sso_sid`), no third-party
    consent to find withdrawn (`_consent_withdrawn`); a failed transition rolls the stamp back
    with everything else."""
    steps = [step for step in patch.get("steps_done", row.steps_done) if step.get("method") != "sso"]
    if not steps or sso_sid is not None or (client is not None and not client.first_party):
        return None
    return outcome_from_steps(steps, auth_time=_last_step_time(steps)).amr


def _ended_meanwhile(row: TransactionRow, events: tuple[dict, ...], error: str, description: str):
    """A login's answer when what it stood on ended since its request began: what the step did
    is kept, with its events (as `finish` does for a session ended while its page waited); a
    prompt=none request, which shows no page, is told `error`; others show the expired page (the
    application starts a new login, which asks for what is missing)."""
    _record(events)
    db.session.commit()
    if "none" in _prompts(row.authz_request["params"]) and "redirect_uri" in row.authz_request:
        return error_to_client(row.authz_request, error, description)
    return redirect(url_for("login.expired"))


def error_to_client(authz: dict, error: str, description: str):
    """An OAuth error to the client's redirect URI (trusted: /authorize checked it), with the
    request's state and our issuer (RFC 9207), in the request's response mode."""
    from urllib.parse import urlencode

    from idp.oidc import response_mode
    from idp.oidc.server import with_issuer

    params = authz["params"]
    query = {"error": error, "error_description": description}
    if params.get("state"):
        query["state"] = params["state"]
    uri = authz["redirect_uri"]
    return response_mode.to_client(with_issuer(f"{uri}{'&' if '?' in uri else '?'}{urlencode(query)}"), uri,
                                   response_mode.of(params))


def _sign_in(user: UserLike, steps: list[dict], client_id: str | None, events: tuple[dict, ...] = ()) -> LoginOutcome:
    """A fresh login: rotate the session, record it (after `events`, the last step's, in the same
    statement), and say what it proved."""
    auth_time = _last_step_time(steps)
    proved = outcome_from_steps(steps, auth_time=auth_time)
    credential_ids = tuple(s["credential_id"] for s in steps if s.get("credential_id") is not None)
    sid = login_session.start(user, auth_time=auth_time, amr=list(proved.amr), acr=proved.acr,
                              started_at=min(int(s.get("at", auth_time)) for s in steps),
                              credential_ids=list(credential_ids))
    gate.record_login(user, proved)
    _record(events + (dict(event="login.succeeded", org_id=user.org_id, actor_id=user.id, actor=user.email,
                           subject_id=user.id, details={"client_id": client_id, "amr": list(proved.amr)}),))
    metrics.LOGINS.labels(outcome="success").inc()
    return LoginOutcome(auth_time=auth_time, amr=proved.amr, acr=proved.acr, sid=sid, credential_ids=credential_ids)


def _last_step_time(steps: list[dict]) -> int:
    return max((int(s.get("at", 0)) for s in steps), default=int(time.time()))


def approve_device(device_id: int, user: UserLike, outcome: LoginOutcome) -> object:
    """The end of a device's login: the device is approved with what the login proved, committed
    with the login (its session, its events). Approved from another browser meanwhile, denied
    or expired: this browser is signed in all the same, and told the code is no longer valid."""
    from idp.oidc import device_flow

    approved = device_flow.approve(device_id, user, outcome)
    db.session.commit()
    return redirect(url_for("device.approved" if approved else "login.expired"))


def issue_code(params: dict, user: UserLike, outcome: LoginOutcome, redirect_uri: str) -> object:
    """The code, to `redirect_uri` (the one /authorize checked), in the request's response mode."""
    from idp.oidc import code_issuance

    location = code_issuance.issue(params, user, outcome)  # Authlib's checks, without its request
    if location is not None:
        db.session.commit()  # the code row, with the transition to `done` and the session
        return response_mode.to_client(with_issuer(location), redirect_uri, response_mode.of(params))
    # What that path leaves to Authlib (a request that no longer passes, a replayed nonce):
    server = current_app.extensions["idp.oauth_server"]
    request = snapshot.rebuild(_settings().issuer, params)
    request.login_outcome = outcome
    request.user = user
    # Validated once more, by create_authorization_response (the stored request was validated
    # at /authorize; the client or its redirect URIs may have changed since).
    grant = server.get_authorization_grant(request)
    response = server.create_authorization_response(request=request, grant_user=user, grant=grant)
    db.session.commit()  # the code row, with the transition to `done` and the session
    if response.status_code != 302:  # an error, already put in a form_post page (handle_error_response)
        return response
    # RFC 9207: tell the client which issuer answered. (An error's redirect already names it, and
    # goes through this unchanged.)
    return response_mode.to_client(with_issuer(response.headers["Location"]), redirect_uri, response_mode.of(params))
