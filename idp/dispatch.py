"""The protocol endpoints that OAuth clients call, dispatched without the browser pages' hooks.

The token, UserInfo, revocation and introspection endpoints are called by client software, not
by browsers: they take no CSRF token (they are exempt), keep no cookie session, and the rate
limiter's hooks are confined to the login pages. Flask's `full_dispatch_request` still runs the
app-wide request hooks for them (the CSRF check, only to find the view exempt; the metrics' rule
note) and sends the request signals, which nothing here listens to: about 40 us of a 0.4 ms
refresh grant, measured in process.

Client endpoints have no browser session either: `client_endpoint_paths` names their URLs, and
the cookie session interface (idp.security.cookie_session) gives those requests a read-only
empty session instead of decoding the cookie a browser or script may have sent along. A client
authenticates with its credentials or a bearer token, never with a user's cookie, and decoding
and re-signing that cookie was about 0.2 ms of a token grant or UserInfo call that carried one.

`ProviderFlask` calls a view marked `client_endpoint` directly and then does what its response
needs: Flask's `make_response`, the session interface's save (skipped for the empty session
above, kept for an app that gives its client endpoints a real one) and the rule note for the
metrics. Errors take Flask's usual path
(`handle_user_exception`, then the app's error handlers); OPTIONS requests and anything
unmarked go through Flask's own dispatch. It also keeps Werkzeug's canonical-URL redirects
(`/admin` to `/admin/`) to a path, never a host taken from the request.

Its requests (`ProviderRequest`) read a query string that is not UTF-8 as werkzeug reads a
percent-encoded byte that is not: the byte stays percent-encoded.
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Request
from flask.globals import request_ctx
from werkzeug.routing import RequestRedirect

from idp.extensions import csrf
from idp.ops import ENVIRON_RULE

_MARK = "idp_client_endpoint"


def client_endpoint(view):
    """Mark a view as called by OAuth clients: exempt from CSRF, dispatched without request hooks."""
    csrf.exempt(view)
    setattr(view, _MARK, True)
    return view


def client_endpoint_paths(app: Flask) -> frozenset[str]:
    """The URL paths of the views marked `client_endpoint` (fixed paths: none takes arguments)."""
    paths = app.extensions.get("idp.client_endpoint_paths")
    if paths is None:
        rules = [rule for rule in app.url_map.iter_rules()
                 if getattr(app.view_functions.get(rule.endpoint), _MARK, False)]
        if any(rule.arguments for rule in rules):
            raise RuntimeError("a client endpoint's URL takes no arguments (idp.dispatch.client_endpoint_paths)")
        paths = app.extensions["idp.client_endpoint_paths"] = frozenset(rule.rule for rule in rules)
    return paths


class ProviderRequest(Request):
    """A request whose query string is valid UTF-8. Browsers percent-encode what they send, but
    a script or a proxy may pass raw bytes on (gunicorn refuses them; werkzeug's server, behind
    `idp serve`, does not): werkzeug then raised UnicodeDecodeError wherever the query was read
    (`request.args`, `full_path`), the language selector of the error page among them, so the
    server answered its own 500. An invalid byte becomes its percent-encoding, which werkzeug
    keeps as it is when it decodes `%FF`: the value names nothing, as such a value always has."""

    def __init__(self, environ, populate_request: bool = True, shallow: bool = False) -> None:
        super().__init__(environ, populate_request, shallow)
        self.query_string = _percent_encoded_where_invalid(self.query_string)


def _percent_encoded_where_invalid(query: bytes) -> bytes:
    try:
        query.decode()
    except UnicodeDecodeError:
        return query.decode("utf-8", "werkzeug.url_quote").encode()  # werkzeug's own handler: b"\xff" -> "%FF"
    return query


class ProviderFlask(Flask):
    request_class = ProviderRequest

    def full_dispatch_request(self):
        ctx = request_ctx._get_current_object()
        request = ctx.request
        rule = request.url_rule
        view = self.view_functions.get(rule.endpoint) if rule is not None else None
        if view is None or not getattr(view, _MARK, False) or request.method == "OPTIONS":
            return super().full_dispatch_request()
        self._got_first_request = True
        try:
            rv = view(**request.view_args)
        except Exception as error:
            rv = self.handle_user_exception(error)
        response = self.make_response(rv)
        if not self.session_interface.is_null_session(ctx.session):
            self.session_interface.save_session(self, ctx.session, response)
        request.environ[ENVIRON_RULE] = rule  # what idp.ops' after_request hook notes for the metrics
        return response

    def raise_routing_exception(self, request):
        """Werkzeug's redirect to a rule's canonical URL (`/admin` to `/admin/`) names the host
        the request's Host header gave, whatever it was: a forged header would be reflected in
        the Location (cache poisoning through a shared proxy). A path is all a browser needs."""
        redirect = request.routing_exception
        if isinstance(redirect, RequestRedirect):
            parts = urlsplit(redirect.new_url)
            # One leading slash: "//host/..." would be read as another host's address.
            redirect.new_url = urlunsplit(("", "", "/" + parts.path.lstrip("/"), parts.query, ""))
        super().raise_routing_exception(request)
