"""Cross-origin calls from browser-based clients (single-page apps: public clients with PKCE).

Such a client exchanges its code, refreshes, calls UserInfo and revokes from its own origin, and
the browser shows it the answer only if the answer names that origin. A client's origins are
those of its registered redirect URIs (where its pages live; the idea of Keycloak's "+" web
origins): no separate list to keep, and no origin that could not already receive its codes.
No credentials mode (`Access-Control-Allow-Credentials`): these endpoints take no cookie.

A preflight (OPTIONS) does not say which client is calling, so it is answered for any origin;
it grants nothing by itself: the answer to the real request names the origin only for its client.
"""
from __future__ import annotations

from base64 import b64decode
from binascii import Error as Base64Error
from urllib.parse import unquote

from idp.oidc.redirect_uris import matches_on_another_loopback_port
from idp.security.origins import browser_origin

# Token, PAR, UserInfo and revocation take it (idp.oidc.views.browser_callable); not
# introspection, which is for confidential clients only. DPoP: a proof beside the token
# (idp.oidc.dpop).
_PREFLIGHT = (("Access-Control-Allow-Methods", "GET, POST"),
              ("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP"),
              ("Access-Control-Max-Age", "600"))


def client_allows(client, origin: str) -> bool:
    """Whether `origin` is one of the client's: the origin of one of its redirect URIs, a loopback
    IP literal's on any port (as the redirect URI itself matches, idp.oidc.redirect_uris: a
    single-page app served from `http://127.0.0.1:5173` in development, registered as
    `http://127.0.0.1/callback`, receives its code there, so it may read the token answer too)."""
    if client is None:
        return False
    origins = [browser_origin(uri) for uri in client.row.redirect_uris or ()]
    return origin in origins or matches_on_another_loopback_port(
        f"{origin}/", [f"{registered}/" for registered in origins if registered])


def client_id_of(request) -> str | None:
    """The client a token or revocation request names: `client_id` in the form (public clients,
    client_secret_post) or the user part of HTTP Basic credentials."""
    if request.form.get("client_id"):
        return request.form["client_id"]
    scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return unquote(b64decode(encoded, validate=True).decode().partition(":")[0]) or None
    except (Base64Error, UnicodeDecodeError, ValueError):
        return None


def allow(response, origin: str):
    """`response`, readable by pages of `origin`."""
    response.headers["Access-Control-Allow-Origin"] = origin
    # A refused token or DPoP proof is explained in the challenge (RFC 6750 3, RFC 9449 7.1);
    # the server's DPoP nonce is for the client's next proof (RFC 9449 8).
    response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate, DPoP-Nonce"
    response.headers.add("Vary", "Origin")
    return response


def preflight(response, origin: str):
    """The answer to an OPTIONS preflight from `origin` (see the module's docstring)."""
    allow(response, origin)
    for name, value in _PREFLIGHT:
        response.headers[name] = value
    return response
