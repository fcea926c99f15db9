"""Where the provider's protocol endpoints are: their paths (the routes) and their URLs at the
issuer (what discovery publishes). A client assertion's `aud` and a DPoP proof's `htu` name
those URLs, so they are read here too: one place, and the three never disagree."""
from __future__ import annotations

from flask import current_app

# Discovery's metadata names (RFC 8414, OIDC Discovery, RFC 9126) -> path at the issuer.
PATHS = {
    "authorization_endpoint": "/authorize",
    "token_endpoint": "/oauth/token",
    "userinfo_endpoint": "/oauth/userinfo",
    "jwks_uri": "/jwks",
    "revocation_endpoint": "/oauth/revoke",
    "introspection_endpoint": "/oauth/introspect",
    "end_session_endpoint": "/logout",
    "pushed_authorization_request_endpoint": "/oauth/par",
    "device_authorization_endpoint": "/oauth/device_authorization",  # RFC 8628 (idp.oidc.device_flow)
}
# Pages for people, not endpoints for clients: where a device's user signs it in (RFC 8628's
# verification_uri, idp.login.device_pages), which the device authorization response names.
PAGES = {
    "device_verification_uri": "/device",
}


def at(issuer: str, name: str) -> str:
    """The URL of endpoint `name` (a key of PATHS or PAGES) at `issuer`."""
    return issuer + (PATHS.get(name) or PAGES[name])


def of(name: str) -> str:
    """The URL of endpoint `name` at this app's issuer."""
    return at(current_app.extensions["idp.settings"].issuer, name)


def environ_uri(environ) -> str:
    """The request's URL without its query, from the WSGI environ (where idp.ops.proxy applied the
    trusted X-Forwarded-* headers): what Authlib's request adapters keep as `uri` (read only to
    refuse plain http outside development), without the IRI decoding and host validation of
    werkzeug's `request.url`."""
    return (f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST') or environ.get('SERVER_NAME', '')}"
            f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}")
