"""HTTP endpoints of the provider: authorization, token, userinfo, revocation, introspection, discovery, JWKS."""
from __future__ import annotations

import logging

from functools import wraps
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from idp.dispatch import client_endpoint
from idp.extensions import csrf, limiter, login_posts_per_ip
from idp.factors.ratelimit import per_address_limit
from idp.login.snapshot import rebuild
from idp.oidc import client_assertion, cors, device_flow, discovery, dpop, keys, parameters, pushed_requests, urls
from idp.oidc.server import query_client, server

bp = Blueprint("oidc", __name__)
log = logging.getLogger("idp.oidc")


def malformed_input_is_a_400(json_errors: bool):
    """Authlib raises ValueError while building some error descriptions from hostile input
    (a quote in response_type, say): that is the client's bad request, not our 500."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except ValueError:
                if json_errors:
                    return jsonify({"error": "invalid_request", "error_description": "Malformed request."}), 400
                return render_template("errors/oauth.html", error="invalid_request",
                                       description="Malformed request."), 400

        return wrapper

    return decorate


# What the error page says, in our words: Authlib's descriptions quote the request (the redirect
# URI, the response type), and a crafted link would put its own sentence on this domain's page.
# Fixed texts, in the reader's language: Authlib's descriptions quote the request, and a crafted
# link would put its own sentence on our page.
_ERROR_PAGE_TEXT = {
    "invalid_client": _l("The application is not registered with this provider."),
    "invalid_request": _l("The application's sign-in request is not valid (for example, its redirect URI is "
                          "missing or not registered)."),
    "unsupported_response_type": _l("The application asked for a kind of answer this provider does not give."),
}


def _error_page(error: OAuth2Error):
    log.info("authorization request refused with a page: %s", error.error,
             extra={"fields": {"description": (error.get_error_description() or "")[:300]}})
    return render_template("errors/oauth.html", error=error.error, description=_ERROR_PAGE_TEXT.get(
        error.error, _l("The application's sign-in request cannot be processed."))), 400


def _starts_no_anonymous_login() -> bool:
    """A request that cannot begin a login from the password: prompt=none (answered from the
    session or refused, never a page: a single-page app may ask on every page view) or a
    browser already signed in. (With a request object or a pushed request, the query's prompt
    is not the request's: such a request is counted.)"""
    from idp.login import session as login_session

    args = request.args
    silent = "none" in (args.get("prompt") or "").split() and not (args.get("request") or args.get("request_uri"))
    return silent or login_session.current_session() is not None


@bp.route(urls.PATHS["authorization_endpoint"], methods=["GET"])
# Each new anonymous login is a stored row (its request, up to 4 KiB a parameter) until it
# expires: they are limited per address at the login forms' rate, counted apart; a real login
# also posts at least one form, which that rate already limits.
@limiter.limit(login_posts_per_ip, exempt_when=_starts_no_anonymous_login)
@malformed_input_is_a_400(json_errors=False)
def authorize():
    """Validate with Authlib, then start (or resume through SSO) a login transaction.

    Errors before the client and redirect URI are trusted (unknown client, unregistered
    redirect URI) get a 400 page, never a redirect; the others go back to the client.
    """
    from idp.login import pipeline

    args, oauth_request = request.args, None
    refusal = _repeated_in_the_query()
    if refusal is not None:
        return refusal
    if not request.args.get("request_uri"):
        refusal = _pushed_requests_required()
        if refusal is not None:
            return refusal
    if request.args.get("request") or request.args.get("request_uri"):
        # A request object (idp.oidc.request_object) or a pushed request (idp.oidc.pushed_requests):
        # its parameters are the request, and nothing else.
        args, refusal = _unpacked_parameters()
        if refusal is not None:
            return refusal
        oauth_request = rebuild(current_app.extensions["idp.settings"].issuer, args)
    if not args.get("redirect_uri") and "openid" in (args.get("scope") or "").split():
        # OIDC Core 3.1.2.1: required. (Authlib would fall back on the client's only URI, and the
        # token request without one would then fail.)
        return _error_page(InvalidRequestError("redirect_uri is required."))
    try:
        grant = server.get_consent_grant(request=oauth_request, end_user=None)
    except OAuth2Error as error:
        if error.error == "unsupported_response_type":
            # Authlib's text repeats the value sent; a missing one is a malformed request (RFC 6749 4.1.2.1).
            if not args.get("response_type"):
                error = InvalidRequestError("response_type is required.", redirect_uri=error.redirect_uri,
                                            state=error.state)
            else:
                error.description = "Only response_type=code is supported."
        if error.redirect_uri and error.error != "login_required":
            return server.handle_error_response(server.create_oauth2_request(oauth_request), error)
        if error.error == "login_required":
            # Authlib answers prompt=none for an anonymous request itself; we decide with the session.
            return _resume_prompt_none(args)
        return _error_page(error)
    return pipeline.start(grant, args)


def _repeated_in_the_query():
    """The refusal of a query that sends twice what is read from it before Authlib's checks and
    hooks see the request (RFC 6749 3.1), else None. A request object or a pushed request's
    reference replaces every other parameter, whose repetitions are then never looked at: sent
    twice, the first was used and the second ignored (as a client_id beside them). A repeated
    client_id or redirect_uri gets the error page, as Authlib's own check answers it (where would
    the error go?); a repeated request or request_uri goes back to the client when the query's
    redirect URI is one it registered."""
    datalist = request.args.to_dict(flat=False)
    name = parameters.repeated_parameter(datalist, parameters.WHERE_ERRORS_GO)
    if name is not None:
        return _error_page(InvalidRequestError(f"{name} must not be sent more than once."))
    name = parameters.repeated_parameter(datalist, parameters.REPLACE_THE_QUERY)
    if name is None:
        return None
    client = query_client(request.args.get("client_id"))
    if client is None:
        return _error_page(InvalidClientError("The client does not exist on this server."))
    return _refusal_before_validation(client, "invalid_request", f"{name} must not be sent more than once.")


def _unpacked_parameters():
    """(the parameters the request holds by value, in its request object, or by reference, as
    a pushed request; None), or (None, the answer refusing them): back to the query's redirect
    URI when the client registered it, else the error page."""
    from idp.oidc.request_object import RequestObjectRefused, parameters

    client = query_client(request.args.get("client_id"))
    if client is None:
        return None, _error_page(InvalidClientError("The client does not exist on this server."))
    try:
        if request.args.get("request_uri"):
            if request.args.get("request"):
                raise RequestObjectRefused("Send request or request_uri, not both.", "invalid_request")
            return pushed_requests.take(request.args["request_uri"], client), None
        return parameters(request.args["request"], client, current_app.extensions["idp.settings"].issuer), None
    except RequestObjectRefused as refused:
        return None, _refusal_before_validation(client, refused.error, str(refused))


def _pushed_requests_required():
    """The refusal of a request sent through the browser by a client whose requests must be
    pushed (RFC 9126 6: `idp client add|update --require-par`), else None."""
    client = query_client(request.args.get("client_id"))
    if client is None or not client.row.require_pushed_authorization_requests:
        return None
    return _refusal_before_validation(client, "invalid_request",
                                      "This client's authorization requests must be pushed (RFC 9126): "
                                      "POST them to the pushed authorization request endpoint first.")


def _refusal_before_validation(client, error_code: str, description: str):
    """An error about the request as the browser brought it, before its parameters are known: back to
    the query's redirect URI when `client` registered it (with the query's state), else the error page."""
    redirect_uri = request.args.get("redirect_uri")
    error = OAuth2Error(description=description, state=request.args.get("state"),
                        redirect_uri=redirect_uri if redirect_uri and client.check_redirect_uri(redirect_uri)
                        else None)
    error.error = error_code
    if error.redirect_uri is None:
        return _error_page(error)
    return server.handle_error_response(server.create_oauth2_request(None), error)


@bp.route(urls.PATHS["authorization_endpoint"], methods=["POST"])
@csrf.exempt  # the client's page posts it: no token of ours, and it changes nothing
def authorize_by_post():
    """OIDC Core 3.1.2.1: the authorization endpoint takes POST (form serialization) as well as GET.

    It is answered as that GET: a 303 to /authorize with the body's parameters as the query.
    Answering the POST itself would miss the browser's session: its cookies are SameSite=Lax,
    and a browser sends none with a POST from another site (the client's page), so prompt=none
    would say login_required to a signed-in user. The GET after the 303 is a top-level
    navigation, which carries them. Parameters in the POST's URL are not read (FormBodyPayload).
    """
    query = urlencode(list(request.form.items(multi=True)))
    return redirect(f"{url_for('oidc.authorize')}?{query}", code=303)


def _resume_prompt_none(args):
    """prompt=none: validate without Authlib's anonymous check, then let the pipeline decide."""
    from idp.login import pipeline

    without_prompt = args.to_dict() if hasattr(args, "to_dict") else dict(args)
    without_prompt.pop("prompt", None)
    snapshot_request = rebuild(current_app.extensions["idp.settings"].issuer, without_prompt)
    try:
        grant = server.get_consent_grant(request=snapshot_request, end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            return server.handle_error_response(snapshot_request, error)
        return _error_page(error)
    return pipeline.start(grant, args)


def _client_named_in_request():
    return query_client(cors.client_id_of(request))


def _client_of_the_presented_token():
    """The client of the access token the request presented, whether UserInfo accepted it or
    refused it (expired, revoked, a DPoP proof without the nonce): its pages read either answer.
    None for a token this server does not know."""
    return query_client(g.get("presented_token_client_id"))


def browser_callable(client_of):
    """An endpoint a browser-based client may call from its own origin (idp.oidc.cors): its
    preflight answered, and its answer readable by that origin when it is one of `client_of()`'s.
    Requests without `Origin` (every server-side client) take the plain path."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            origin = request.headers.get("Origin")
            if request.method == "OPTIONS":
                response = Response(status=204)
                return cors.preflight(response, origin) if origin else response
            if not origin:
                return view(*args, **kwargs)
            response = current_app.make_response(view(*args, **kwargs))
            return cors.allow(response, origin) if cors.client_allows(client_of(), origin) else response

        return wrapper

    return decorate


def offers_dpop_nonce(view):
    """The endpoints that take DPoP proofs answer a request with one with the current server
    nonce, when nonces are required (idp.oidc.dpop.offer_nonce), refusals included."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        return dpop.offer_nonce(current_app.make_response(view(*args, **kwargs)), request.headers)

    return wrapper


@bp.route(urls.PATHS["token_endpoint"], methods=["POST", "OPTIONS"], provide_automatic_options=False)
@client_endpoint
@browser_callable(_client_named_in_request)
@malformed_input_is_a_400(json_errors=True)
@offers_dpop_nonce
def token():
    return server.create_token_response()


@bp.route(urls.PATHS["pushed_authorization_request_endpoint"], methods=["POST", "OPTIONS"], provide_automatic_options=False)
@client_endpoint
@browser_callable(_client_named_in_request)
@malformed_input_is_a_400(json_errors=True)
@per_address_limit(exempt_when=lambda: _pushed_for_a_confidential_client())  # (defined below)
@offers_dpop_nonce
def pushed_authorization_request():
    """RFC 9126: the client sends its authorization request here first (idp.oidc.pushed_requests).
    Each is a row (up to 16 KiB) kept until it expires: a public client's, which its id alone
    can send, are limited per address as the login forms are; a confidential client's are not
    (its backend pushes every login of its users from one address, and credentials that fail
    store nothing)."""
    return server.create_endpoint_response(pushed_requests.ENDPOINT_NAME)


def _pushed_for_a_confidential_client() -> bool:
    """Whether the client the push names (its `client_id`, else the user of HTTP Basic, else the
    `sub` of its client assertion) is a confidential one. Decided by the client, not by what the
    request carries: a public client authenticates by its id alone (`none`) whatever else comes
    along, so an `Authorization` header or a `client_assertion` of any content must not lift its
    limit (an audit pushed without end for a public client that way)."""
    client = query_client(cors.client_id_of(request) or client_assertion.subject(request.form))
    return client is not None and not client.row.public


@bp.route(urls.PATHS["device_authorization_endpoint"], methods=["POST", "OPTIONS"], provide_automatic_options=False)
@client_endpoint
@browser_callable(_client_named_in_request)
@malformed_input_is_a_400(json_errors=True)
@per_address_limit
def device_authorization():
    """RFC 8628 3.1: a device asks for its codes (idp.oidc.device_flow). Each is a row that lives
    `tokens.device_code_ttl`, asked for by a public client's id alone: limited per address as the
    login forms are (beyond it `429 {"error": "too_many_attempts", "retry_after"}`)."""
    return server.create_endpoint_response(device_flow.ENDPOINT_NAME)


@bp.route(urls.PATHS["userinfo_endpoint"], methods=["GET", "POST", "OPTIONS"], provide_automatic_options=False)
@client_endpoint
@browser_callable(_client_of_the_presented_token)
@malformed_input_is_a_400(json_errors=True)
@offers_dpop_nonce
def userinfo():
    return server.create_endpoint_response("userinfo")


@bp.route(urls.PATHS["revocation_endpoint"], methods=["POST", "OPTIONS"], provide_automatic_options=False)
@client_endpoint
@browser_callable(_client_named_in_request)
@malformed_input_is_a_400(json_errors=True)
def revoke():
    return server.create_endpoint_response("revocation")


@bp.post(urls.PATHS["introspection_endpoint"])
@client_endpoint
@malformed_input_is_a_400(json_errors=True)
def introspect():
    return server.create_endpoint_response("introspection")


# Public documents: any web page may read them (a browser-based client starting its login).
_PUBLIC = {"Access-Control-Allow-Origin": "*"}


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")  # RFC 8414's name for the same metadata
@limiter.exempt
def openid_configuration():
    document = current_app.extensions.get("idp.discovery_json")
    if document is None:
        document = current_app.extensions["idp.discovery_json"] = discovery.build(
            current_app.extensions["idp.settings"])
    return Response(document, mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=3600", **_PUBLIC})


@bp.get(urls.PATHS["jwks_uri"])
@limiter.exempt
def jwks():
    return Response(keys.snapshot().jwks_json, mimetype="application/json",
                    headers={"Cache-Control": f"public, max-age={jwks_max_age(current_app.extensions['idp.settings'])}",
                             **_PUBLIC})


JWKS_MAX_AGE = 300  # seconds relying parties may keep the key set, at most


def jwks_max_age(settings) -> int:
    """How long a relying party (or an HTTP cache before it) may keep the key set: never past the
    moment a key rotated in now may start to sign. A new key is published `tokens.key_publish_delay`
    seconds before it signs, and every worker has it in its JWKS within its key cache
    (KEY_SNAPSHOT_SECONDS) and its cached document (`ops.cached_documents_ttl`): a copy fetched
    just before the rotation must have expired by then. (With a flat 300 s, production accepted a
    15 s delay, and relying parties kept a key set without the signing key for minutes: an audit.)"""
    from idp.config_ranges import KEY_SNAPSHOT_SECONDS

    delay = int(settings.get("tokens.key_publish_delay") or 0)
    documents = int(settings.get("ops.cached_documents_ttl") or 0)
    return max(0, min(JWKS_MAX_AGE, delay - documents - KEY_SNAPSHOT_SECONDS))
