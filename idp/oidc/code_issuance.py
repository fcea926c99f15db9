"""The code that ends a login, issued without rebuilding Authlib's request.

The login pipeline (idp.login.pipeline.issue_code) used to hand the stored authorization request
back to Authlib's `create_authorization_response`, which builds an OAuth request and a grant
with its hooks, validates the request once more (the client or its redirect URIs may have
changed since /authorize) and then calls our `save_authorization_code`: about 0.4 ms of the
login's last POST. `issue` makes the same checks on the same (cached) client, inserts the code's
row with one INSERT ... SELECT that also asks the database whether the client still exists and
whether its nonce is new, and builds the same redirect.

Anything this path does not answer itself (a check that fails, a nonce seen before, a client
removed since it was cached) returns None, and the caller takes Authlib's path, which gives the
error exactly as before. The code's row is `grants.code_row`, shared with Authlib's path, so a
code carries the same bindings whichever path issued it.
"""
from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from sqlalchemy import bindparam, exists, select

from idp.db import db
from idp.models import Client
from idp.oidc import backchannel, parameters
from idp.oidc.grants import _CODE_CHALLENGE, NONCE_USED, code_insert_where, code_row
from idp.security.tokens import random_token

_CLIENTS = Client.__table__
# The client still registered, as public or confidential as the cached copy said (whether it
# had to send a PKCE challenge): read in the INSERT, not from the per-process cache.
_CLIENT_STILL_THERE = select(_CLIENTS.c.id).where(
    _CLIENTS.c.client_id == bindparam("client_id"), _CLIENTS.c.public == bindparam("client_public_"))


def _insert_if_current_statement(columns: tuple[str, ...], with_nonce: bool):
    """INSERT the code's row ... SELECT its values WHERE the client still exists (and, with a
    nonce, NOT EXISTS a code of this client's with it: grants.NONCE_USED)."""
    return code_insert_where(("if_current", with_nonce), columns, lambda: [
        exists(_CLIENT_STILL_THERE), *([~exists(NONCE_USED)] if with_nonce else [])])


def _checked_redirect_uri(params: dict, client) -> str | None:
    """Where the code goes, if the request still passes what Authlib's second validation checks
    (validate_code_authorization_request and the code grant's hooks: idp.oidc.parameters'
    well-formedness, S256CodeChallenge, OpenIDCode); None for anything else, which the caller
    leaves to Authlib and its error."""
    requested = params.get("redirect_uri")
    if requested:
        if not client.check_redirect_uri(requested):
            return None
        redirect_uri = requested
    else:
        redirect_uri = client.get_default_redirect_uri()
        if not redirect_uri:
            return None
    if not client.check_response_type(params.get("response_type")):
        return None
    datalist = {name: [value] for name, value in params.items()}
    if parameters.unstorable_parameter(datalist) or parameters.oversized_parameter(datalist):
        return None
    from flask import current_app

    supported = current_app.extensions["idp.oauth_server"].scopes_supported
    if supported and params.get("scope") and not set(supported).issuperset(params["scope"].split()):
        return None
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if challenge or method:
        if not (challenge and method == "S256" and _CODE_CHALLENGE.fullmatch(challenge)):
            return None
    elif client.row.public:
        return None  # a public client must send a challenge
    return redirect_uri


def issue(params: dict, user, outcome) -> str | None:
    """Issue the code of a login that ends (its row written in the session's transaction, which
    the caller commits): the redirect URI with `code` and `state` added, as Authlib adds them;
    None when the caller must take Authlib's path instead (see the module's docstring)."""
    from idp.oidc.server import clients, query_client

    client = query_client(params.get("client_id"))
    if client is None:
        return None
    redirect_uri = _checked_redirect_uri(params, client)
    if redirect_uri is None:
        return None
    code = random_token(32)  # grants.AuthorizationCodeGrant.generate_authorization_code
    values = code_row(code, params, client, user.id, outcome)
    statement = _insert_if_current_statement(tuple(values), values["nonce"] is not None)
    if db.run(statement, {**values, "client_public_": client.row.public}).rowcount != 1:
        # A replayed nonce, or a client removed (or changed) since this process cached it:
        # Authlib's path answers either, with a fresh copy of the client.
        clients.forget(client.get_client_id())
        return None
    backchannel.remember(client, outcome.sid, user.id)  # whom to tell when the session ends
    answer = [("code", code)]
    if params.get("state"):
        answer.append(("state", params["state"]))
    return add_params_to_uri(redirect_uri, answer)
