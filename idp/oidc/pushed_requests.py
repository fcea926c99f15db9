"""Pushed authorization requests (RFC 9126): a client sends its authorization request straight
to this server, authenticated, and the browser then carries only a reference to it.

`POST /oauth/par` takes the parameters /authorize would take (or a signed `request` object,
idp.oidc.request_object), with the client's credentials as at the token endpoint. They are
checked as /authorize checks them (client, redirect URI, response type, scope, PKCE, nonce,
prompt, max_age), and a refusal is a JSON error (RFC 9126 2.3), never a redirect. An
accepted request is stored for LIFETIME seconds under a random `request_uri`
(`urn:ietf:params:oauth:request_uri:...`, 256 bits; only its SHA-256 is kept), answered
`201 {"request_uri", "expires_in"}`. The browser is then sent to
`/authorize?client_id=...&request_uri=...`.

What that buys the client: its request never passes through the browser, so nobody on the way
can read or change it (the redirect URI, the scope, the PKCE challenge), its size is not bound
by a URL's, and the client has authenticated before any login page is shown.

At /authorize the request_uri is taken by one DELETE ... RETURNING, committed at once: a
reference is good for one authorization request, its client's only, before it expires
(RFC 9126 4 lets a server allow reuse; this one does not, so that a leaked link cannot start a
second login). What the browser brings beside `client_id` and `request_uri` is ignored, as for
a request object (RFC 9101 5). The stored parameters then go through /authorize's checks
again (a client changed meanwhile), and the login runs as for any request.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.endpoint import Endpoint, EndpointRequest
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from flask import current_app
from sqlalchemy import bindparam, delete

from idp.db import db, utcnow
from idp.models import PushedRequest
from idp.oidc import dpop, parameters, request_object, response_mode, urls
from idp.oidc.adapters import AUTH_METHODS
from idp.oidc.request_object import RequestObjectRefused
from idp.security.tokens import random_token, sha256_hex

ENDPOINT_NAME = "pushed_authorization_request"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
# Long enough for the client to redirect the browser, short enough that a reference is of no
# use once the login it was made for has begun (RFC 9126 2.2 suggests 5 to 600 seconds).
LIFETIME = 90
# A pushed request is not bound by a URL's length as one through the browser is (about 8 KB
# with common servers and proxies), but it is stored, and then kept with the login: a bound of
# its own, in characters of its parameters' names and values.
MAX_SIZE = 16 * 1024

# What a pushed request keeps: the authorization request's own parameters. The client's
# credentials beside them (a secret, an assertion) are not part of it; a nested `request_uri`
# is refused, and a `request` object is unpacked first.
_KEPT = parameters.RECOGNIZED - {"request", "request_uri"}

_TABLE = PushedRequest.__table__
# Takes the reference: one statement, so that of two simultaneous uses exactly one finds it.
_TAKE = (delete(_TABLE)
         .where(_TABLE.c.request_uri_hash == bindparam("request_uri_hash"),
                _TABLE.c.client_id == bindparam("client_id"), _TABLE.c.expires_at > bindparam("now"))
         .returning(_TABLE.c.parameters))


class RequestRefused(OAuth2Error):
    """A pushed request this server will not keep: a JSON error with the code RFC 9126 2.3 (or
    RFC 6749 4.1.2.1, for what /authorize would refuse) names, status 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description=description, status_code=400)
        self.error = error


@dataclass
class PushedAuthorizationRequest(EndpointRequest):
    parameters: dict | None = None


class PushedAuthorizationEndpoint(Endpoint):
    """`POST /oauth/par`: Authlib authenticates the client (any method it is registered for,
    `none` for a public client, as at the token endpoint), this endpoint checks and keeps the
    request."""

    ENDPOINT_NAME = ENDPOINT_NAME
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_request(self, request) -> PushedAuthorizationRequest:
        client = self.server.authenticate_client(request, self.CLIENT_AUTH_METHODS, ENDPOINT_NAME)
        request.client = client
        return PushedAuthorizationRequest(request=request, client=client,
                                          parameters=authorization_parameters(request.payload, client,
                                                                              request.headers))

    def create_response(self, validated: PushedAuthorizationRequest):
        request_uri = REQUEST_URI_PREFIX + random_token(32)
        expires_at = utcnow() + timedelta(seconds=LIFETIME)
        db.session.rollback()  # the checks only read: end their transaction before the lone write
        db.insert_alone(_TABLE, {"request_uri_hash": sha256_hex(request_uri), "expires_at": expires_at,
                                 "client_id": validated.client.get_client_id(),
                                 "parameters": validated.parameters})
        return 201, {"request_uri": request_uri, "expires_in": LIFETIME}, default_json_headers


def authorization_parameters(payload, client, headers) -> dict[str, str]:
    """The authorization request a client pushed (the body's parameters, or its request
    object's), checked as /authorize would check it, bound to the key of a DPoP proof among
    the request's `headers` if there is one; RequestRefused (or InvalidDPoPProof) saying why not."""
    datalist = payload.datalist
    if payload.data.get("request_uri"):
        raise InvalidRequestError("request_uri cannot be pushed: push the request itself.")
    name = parameters.repeated_parameter(datalist) or parameters.unstorable_parameter(datalist)
    if name is not None:
        raise InvalidRequestError(f"{name} must be sent once, and hold no character such as NUL.")
    issuer = current_app.extensions["idp.settings"].issuer
    client_id = client.get_client_id()
    if payload.data.get("client_id", client_id) != client_id:
        raise InvalidRequestError("client_id is not the authenticated client's.")
    if payload.data.get("request"):
        try:
            found = request_object.parameters(payload.data["request"], client, issuer)
        except RequestObjectRefused as refused:
            raise RequestRefused(refused.error, str(refused)) from None
    else:
        found = {name: payload.data[name] for name in _KEPT if payload.data.get(name)}
    found["client_id"] = client_id
    proof = dpop.proof_of(headers, "POST", urls.at(issuer, "pushed_authorization_request_endpoint"))
    if proof is not None:
        # RFC 9449 10.1: a proof sent with the push binds the code to its key, as dpop_jkt would.
        dpop.spend(proof)
        if found.setdefault("dpop_jkt", proof.jkt) != proof.jkt:
            raise dpop.InvalidDPoPProof("dpop_jkt is not the thumbprint of the DPoP proof's key.")
    if sum(len(name) + len(value) for name, value in found.items()) > MAX_SIZE:
        raise InvalidRequestError(f"The authorization request is larger than {MAX_SIZE // 1024} KiB.")
    check_authorization_request(found, issuer)
    return found


def check_authorization_request(params: dict[str, str], issuer: str) -> None:
    """/authorize's checks of a request, short of the login (so `prompt=none` is not answered
    here: whether a session exists is known only when the browser comes); RequestRefused or
    Authlib's OAuth2Error, both sent as JSON."""
    from idp.login import gate, pipeline
    from idp.login.snapshot import rebuild
    from idp.oidc.server import server

    if not params.get("redirect_uri") and "openid" in (params.get("scope") or "").split():
        raise InvalidRequestError("redirect_uri is required.")  # OIDC Core 3.1.2.1, as at /authorize
    refused = pipeline.unsupported(params)
    if refused is not None:
        raise RequestRefused(*refused)
    if params.get("max_age") is not None and gate.max_age_of(params) is None:
        raise InvalidRequestError("max_age must be a whole number of seconds.")
    try:
        grant = server.get_consent_grant(request=rebuild(issuer, {k: v for k, v in params.items() if k != "prompt"}),
                                         end_user=None)
    except OAuth2Error as error:
        # Answered here as JSON: never sent to the redirect URI, and no state to echo.
        error.redirect_uri = error.state = None
        if error.error == "unsupported_response_type":
            error.description = ("response_type is required." if not params.get("response_type")
                                 else "Only response_type=code is supported.")
            if not params.get("response_type"):
                error.error = "invalid_request"
        error.status_code = 401 if error.error == "invalid_client" else 400
        raise
    unreachable = response_mode.unreachable(params, grant.redirect_uri)
    if unreachable is not None:
        raise RequestRefused("invalid_request", unreachable)


def take(request_uri: str, client) -> dict[str, str]:
    """The parameters `client` pushed under `request_uri`, which is spent by this call;
    RequestObjectRefused (`invalid_request_uri`) when it is not one of this client's live ones."""
    if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > 200:
        raise RequestObjectRefused("request_uri must be one this server gave for a pushed request; requests "
                                   "are not fetched from elsewhere.", "request_uri_not_supported")
    # Spent alone, committed at once. A browser already signed in here has had its session read
    # (the rate limit's exemption): that read is committed first, as a login's first row is
    # (idp.login.transaction.begin), or the statement would be refused inside its transaction.
    db.session.commit()
    row = db.first_alone(_TAKE, {"request_uri_hash": sha256_hex(request_uri), "client_id": client.get_client_id(),
                                 "now": utcnow()})
    if row is None:
        raise RequestObjectRefused("The request_uri is unknown, expired, already used, or another client's.",
                                   "invalid_request_uri")
    return dict(row.parameters)

