"""What an authorization request's parameters must look like before anything reads them: each
recognized parameter at most once (RFC 6749 3.1), and no value a row cannot hold.

Checked by `WellFormedParameters`, a hook on the code grant that runs once the client and its
redirect URI are known to be genuine and before any other check: from there on a malformed
request is the client's to hear about (RFC 6749 4.1.2.1, OIDC Core 3.1.2.6), as a redirect with
`error=invalid_request` (and `state`, `iss`), not as an error page of ours. Before that point
(an unknown client, an unregistered redirect URI) the error page stays (CONTRACT.md, rule 7).
"""
from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from idp.security.text import storable

# The authorization request parameters this provider recognizes (RFC 6749 4.1.1, RFC 7636 4.3,
# OIDC Core 3.1.2.1 and 6): whatever it does with them, honour or refuse, it reads them. Any
# other parameter is ignored, as RFC 6749 3.1 requires.
RECOGNIZED = frozenset({
    "response_type", "client_id", "redirect_uri", "scope", "state", "response_mode", "nonce", "display", "prompt",
    "max_age", "ui_locales", "claims_locales", "id_token_hint", "login_hint", "acr_values", "claims", "request",
    "request_uri", "registration", "code_challenge", "code_challenge_method", "dpop_jkt",
})


# How long a recognized parameter's value may be. The login transaction stores the request
# while the user signs in, and anyone may start one: far beyond what any client sends, a value
# is refused rather than stored. The JWTs (a request object, an ID token hint) and the claims
# request may be longer than the rest.
MAX_VALUE_LENGTH = 4096
MAX_DOCUMENT_LENGTH = 32768
DOCUMENTS = frozenset({"request", "id_token_hint", "claims"})
# The nonce is shorter still: the code that ends the login stores it in an indexed column
# (authorization_codes (client_id, nonce): the replay check), and PostgreSQL refuses a B-tree
# index entry over 2,704 bytes. 512 characters, even at UTF-8's 4 bytes each beside a 64-character
# client_id, stay below it; a nonce 4 KiB long was a 500 once the user had typed their password.
MAX_NONCE_LENGTH = 512


# Where an error may be sent: repeated, they are checked before anything else, and answered with
# the error page (`AuthorizationCodeGrant.validate_no_multiple_request_parameter`).
WHERE_ERRORS_GO = frozenset({"client_id", "redirect_uri"})
# What replaces every other parameter of the query (a request object, a pushed request's
# reference): read from the query before any hook runs, and checked there too (idp.oidc.views).
REPLACE_THE_QUERY = frozenset({"request", "request_uri"})


def repeated_parameter(datalist, names=RECOGNIZED) -> str | None:
    """The first of `names` sent more than once, or None. An empty value counts as not sent
    (RFC 6749 3.1), so `state=&state=x` holds one state."""
    for name in sorted(names & datalist.keys()):
        if sum(1 for value in datalist[name] if value) > 1:
            return name
    return None


def oversized_parameter(datalist) -> str | None:
    """The first recognized parameter with a value longer than it may be, or None."""
    for name in sorted(RECOGNIZED & datalist.keys()):
        limit = MAX_DOCUMENT_LENGTH if name in DOCUMENTS else MAX_NONCE_LENGTH if name == "nonce" else MAX_VALUE_LENGTH
        if any(len(value) > limit for value in datalist[name]):
            return name
    return None


def unstorable_parameter(datalist) -> str | None:
    """The first recognized parameter with a value no row can hold (a NUL, a lone surrogate:
    idp.security.text), or None. Such a value is malformed whatever the parameter means, and the
    login transaction that stores the request could not hold it (PostgreSQL refuses NUL)."""
    for name in sorted(RECOGNIZED & datalist.keys()):
        if not all(storable(value) for value in datalist[name]):
            return name
    return None


class WellFormedParameters:
    """A code grant extension: refuse a malformed request as soon as its redirect URI is trusted.

    Registered on `before_validate_authorization_request_payload`, which Authlib runs right
    after it checked the client, the redirect URI and the response type, and before the scope,
    PKCE and nonce checks (the nonce check reads the database). An `OAuth2Error` raised there
    goes back to the client's redirect URI."""

    def __call__(self, grant) -> None:
        grant.register_hook("before_validate_authorization_request_payload", self.validate)

    def validate(self, grant, redirect_uri) -> None:
        datalist = grant.request.payload.datalist
        name = repeated_parameter(datalist)
        if name is not None:
            raise InvalidRequestError(f"{name} must not be sent more than once.")
        name = unstorable_parameter(datalist)
        if name is not None:
            raise InvalidRequestError(f"{name} holds a character no request may carry (such as NUL).")
        name = oversized_parameter(datalist)
        if name is not None:
            raise InvalidRequestError(f"{name} is longer than any request needs.")


# ---- The endpoints clients call with their credentials: token, revocation, introspection.

# Their parameters (RFC 6749 2.3.1, 4.1.3, 4.4.2 and 6, RFC 7636 4.5, RFC 7009 2.1, RFC 7662 2.1,
# RFC 8628 3.4).
CLIENT_REQUEST_RECOGNIZED = frozenset({
    "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id", "client_secret",
    "token", "token_type_hint", "client_assertion", "client_assertion_type", "device_code",
})


def malformed_client_request(request) -> str | None:
    """Why a request to a client endpoint is malformed before its client is even known (the
    `error_description` of an `invalid_request`), or None: a parameter sent twice (RFC 6749 3.2),
    or a client that authenticates twice or names two clients."""
    name = repeated_parameter(request.payload.datalist, CLIENT_REQUEST_RECOGNIZED)
    if name is not None:
        return f"{name} must not be sent more than once."
    return two_client_identities(request)


def two_client_identities(request) -> str | None:
    """RFC 6749 2.3: a client uses one authentication method per request. HTTP Basic credentials
    with a client_secret in the body as well were tried one after the other (a wrong pair in the
    header, a right one in the body passed); with a client_id in the body naming another client,
    the request was answered for the one in the header. Either is refused, as node-oidc-provider
    does. (A client_id in the body that repeats the header's is allowed: RFC 6749 3.2.1 lets a
    client name itself.) A client assertion (RFC 7523) comes alone too: with a secret beside it,
    in the header or the body, one of the two would be tried and the other ignored."""
    basic_client_id, _ = extract_basic_authorization(request.headers)
    body = request.payload.data
    if body.get("client_assertion") and (basic_client_id or body.get("client_secret")):
        return "Authenticate the client one way: a client assertion or a secret, not both."
    if not basic_client_id:
        return None
    if body.get("client_secret"):
        return "Authenticate the client one way: HTTP Basic or client_secret in the body, not both."
    if body.get("client_id") and body["client_id"] != basic_client_id:
        return "client_id in the body names another client than the Authorization header."
    return None
