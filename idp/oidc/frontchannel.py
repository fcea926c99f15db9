"""OpenID Connect Front-Channel Logout 1.0: telling applications, through the user's browser,
that the session they signed in through has ended.

A client registered with a `frontchannel_logout_uri` (`idp client add|update
--frontchannel-logout-uri`; at the origin of one of its redirect URIs) is remembered for each
session that signed it in, as for back-channel logout (`idp.oidc.backchannel.remember`: a
`session_clients` row). When the browser signs out here (`/logout`: the user's own sign-out or
an RP-initiated logout), the signed-out page loads each such client's URI in a hidden frame,
with `iss` and `sid` added to its query (section 3: always, so a client need not ask with
`frontchannel_logout_session_required`), so that the client ends its own session for that
`sid` (its cookies may not reach a third-party frame; the `sid` does). When the sign-out returns
to the client (a registered `post_logout_redirect_uri`), the page goes on there once every frame
has loaded, or after `WAIT_SECONDS` for a client that does not answer; a browser without
scripts gets the frames and a "Continue" link.

Sessions ended without this browser (sign out everywhere, an admin, the CLI, a new password)
have no page to carry frames: their clients learn of it by the back channel only.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import current_app, render_template
from sqlalchemy import select

from idp.db import db
from idp.models import Client, SessionClient
from idp.security.headers import csp_for_frames_of

WAIT_SECONDS = 5  # the longest the signed-out page waits for the clients' frames before going on


def frame_uris(user_id: int, sid: str) -> list[str]:
    """The front-channel logout URIs, `iss` and `sid` added, of the clients that the session
    `sid` signed in and that registered one; read before the session ends."""
    uris = db.session.scalars(
        select(Client.frontchannel_logout_uri)
        .join(SessionClient, SessionClient.client_id == Client.client_id)
        .where(SessionClient.sid == sid, SessionClient.user_id == user_id,
               Client.frontchannel_logout_uri.is_not(None))).all()
    issuer = current_app.extensions["idp.settings"].issuer
    return [with_query(uri, iss=issuer, sid=sid) for uri in sorted(set(uris))]


def with_query(uri: str, **params: str) -> str:
    """`uri` with `params` added to its query (the registered query kept, section 2 allows one)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def signed_out_page(frames: list[str], continue_to: str | None):
    """The signed-out page that loads `frames`, going on to `continue_to` (the client's
    post-logout redirect URI with its state) when there is one."""
    return (render_template("login/frontchannel_logout.html", frames=frames, continue_to=continue_to,
                            wait_seconds=WAIT_SECONDS),
            200, {"Content-Security-Policy": csp_for_frames_of(frames)})
