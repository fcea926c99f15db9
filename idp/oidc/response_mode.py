"""How an authorization response reaches the client: the request's `response_mode`.

`query`, the code flow's default (RFC 6749 4.1.2): a 302 to the redirect URI with the response's
parameters (`code` and `state`, or `error`..., and `iss`, RFC 9207) added to its query.

`form_post` (OAuth 2.0 Form Post Response Mode): a page of ours whose form POSTs those
parameters to the redirect URI, `application/x-www-form-urlencoded`, submitted by its script as
it loads (or by its button, without scripts). The code then stays out of the URL: out of the
browser's history, the client's access logs and any Referer. ASP.NET Core's OpenID Connect
handler asks for it by default. The page may be framed by the client's origin alone (a session
renewed in a hidden iframe, as a redirect allows) and its form may go nowhere else.

Every answer that goes back to the client passes through `to_client`: the code (idp.login.pipeline
issue_code), an error once the redirect URI is trusted (AuthorizationServer.handle_error_response)
and the person's refusal at the consent page. `fragment` is not offered: it exists for responses
meant for a script in the page, which a code response is not.

A native app's private-use redirect URI (`com.example.app:/callback`, RFC 8252 7.1) is no web
page: the browser hands it to the app, which no POST can reach. `form_post` to one is refused
(`unreachable`, invalid_request, as for a mode not offered), and that refusal goes there as a
query redirect, the only answer the app can receive.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from flask import make_response, redirect, render_template

from idp.oidc.private_use_schemes import is_private_use
from idp.security.headers import csp_for_form_post

MODES = ("query", "form_post")


def of(params) -> str:
    """The response mode a request asked for (a parameter sent empty is one not sent)."""
    return params.get("response_mode") or "query"


def unreachable(params, redirect_uri: str | None) -> str | None:
    """Why the request's response_mode cannot reach `redirect_uri` (the request's, or the one
    registered URI it implies), for the error's description; None when it can."""
    if of(params) == "form_post" and is_private_use(redirect_uri):
        return ("response_mode=form_post cannot reach a private-use URI scheme redirect URI (a native app): "
                "use response_mode=query.")
    return None


def to_client(location: str, redirect_uri: str, mode: str | None):
    """The answer that takes the authorization response to the client.

    `location`: `redirect_uri` with the response's parameters added to its query (how Authlib and
    the consent page build it, and with_issuer after them); `mode`: the request's response_mode,
    anything but form_post meaning query (an unsupported one is refused before, and the refusal
    itself has to go back somehow).
    """
    csp = csp_for_form_post(redirect_uri) if mode == "form_post" else None
    if csp is None:
        return redirect(location)
    own = len(parse_qsl(urlsplit(redirect_uri).query, keep_blank_values=True))
    fields = parse_qsl(urlsplit(location).query, keep_blank_values=True)[own:]
    page = render_template("login/form_post.html", action=redirect_uri, fields=fields)
    return make_response(page, 200, {"Content-Security-Policy": csp})
