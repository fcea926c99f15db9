"""Request objects (RFC 9101, OIDC Core 6.1): an authorization request sent as a JWT the client signed.

A client registered with keys (private_key_jwt, idp.oidc.client_assertion) may send its
authorization request as `/authorize?client_id=...&request=JWT`: the parameters are the JWT's
claims, signed with one of its registered keys, so that nobody on the way (the browser, an
extension, a proxy) can change the redirect URI, scope, PKCE challenge or nonce unnoticed.

What is accepted, as RFC 9101 says: the signature verifies with the client's keys (an
asymmetric algorithm: never `none`, never an HMAC); `iss` is the client_id, `aud` this server's
issuer, `client_id` (when the object has one) the query's; `exp` is required and at most
MAX_LIFETIME ahead. Only the object's parameters are used: any other in the query is ignored
(RFC 9101 6.3), the query's client_id aside, which names the client whose keys verify it. A
parameter's value is text (a number becomes its decimal text: `max_age`); a nested `request`
or `request_uri` is refused. A request object fetched from a client's URL (`request_uri`) is
not offered; a pushed one is (idp.oidc.pushed_requests, which unpacks a pushed object here).

A request object that cannot be used is `invalid_request_object` (`request_not_supported` from
a client without keys), sent back to the redirect URI in the query when it is one of the
client's registered ones (an exact match: a destination that holds no matter what the object
says), else shown as the error page.
"""
from __future__ import annotations

import time

from joserfc import jwt
from joserfc.errors import JoseError

# Signed by the same keys, bounded as their assertions are.
from idp.oidc.client_assertion import LEEWAY, MAX_LIFETIME, SIGNING_ALGS, key_resolver
from idp.oidc.client_jwks import KeysUnavailable

# The JWT's own claims: about the object, not parameters of the request.
_ABOUT_THE_OBJECT = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti", "sub"})


class RequestObjectRefused(ValueError):
    """The request object cannot be used; the message is the `error_description`, `error` the
    error code: `invalid_request_object`, or `request_not_supported` for a client without keys
    (to it, this server takes no request objects)."""

    def __init__(self, description: str, error: str = "invalid_request_object") -> None:
        super().__init__(description)
        self.error = error


def parameters(raw: str, client, issuer: str) -> dict[str, str]:
    """The authorization request's parameters from `client`'s request object `raw`, with the
    client_id; RequestObjectRefused saying why it cannot be used."""
    if not client.has_keys():
        raise RequestObjectRefused("Request objects are accepted from clients registered with keys only: send "
                                   "the parameters themselves.", "request_not_supported")
    try:
        token = jwt.decode(raw, key_resolver(client), algorithms=list(SIGNING_ALGS))
    except (JoseError, ValueError, TypeError):
        raise RequestObjectRefused("The request object's signature does not verify with the client's keys.") from None
    except KeysUnavailable:
        raise RequestObjectRefused("The client's keys could not be fetched from its jwks_uri.") from None
    claims = dict(token.claims)
    client_id = client.get_client_id()
    registry = jwt.JWTClaimsRegistry(leeway=LEEWAY, iss={"essential": True, "value": client_id},
                                     aud={"essential": True, "value": issuer}, exp={"essential": True})
    try:
        registry.validate(claims)
    except JoseError as error:
        raise RequestObjectRefused(f"The request object's claims are not valid ({error.error}).") from None
    if claims["exp"] > time.time() + MAX_LIFETIME + LEEWAY:
        raise RequestObjectRefused(f"The request object must expire within {MAX_LIFETIME} seconds.")
    if claims.get("client_id", client_id) != client_id:
        raise RequestObjectRefused("The request object's client_id is not the request's.")
    if "request" in claims or "request_uri" in claims:
        raise RequestObjectRefused("A request object cannot hold another one.")
    found = {"client_id": client_id}
    for name, value in claims.items():
        if name in _ABOUT_THE_OBJECT or name == "client_id":
            continue
        if name == "claims":
            # A JSON object here (OIDC Core 5.5, 6.1); the claims parameter is not supported
            # (discovery: claims_parameter_supported false) and is ignored, as in a query.
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise RequestObjectRefused(f"The request object's {name} must be a string.")
        found[name] = value
    return found
