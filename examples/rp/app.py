"""A tiny relying party: signs in through the provider and shows what it learned.

It uses only the provider's public protocol, through Authlib's Flask client:
OpenID Connect discovery (its issuer checked against the one configured), the
authorization code flow with PKCE (S256), ID token validation against the JWKS
(signature, issuer, audience, nonce, expiry: a token failing any is an error page,
never a sign-in), UserInfo (used only when its `sub` is the ID token's), and
RP-initiated logout through the end_session_endpoint, from a POST form with a CSRF
token (a link would let any site sign the user out), and front-channel logout: the
provider's signed-out page loads /frontchannel-logout?iss=...&sid=... in a hidden frame,
and this app's session of that `sid` ends (kept in memory: a frame of another site gets no
cookie of ours, so the session is found again by its `sid` at its next request).

Configuration (environment), with `make run` filling it in:
  RP_CONFIG         JSON file with issuer, client_id, client_secret (`idp demo seed` writes it)
  RP_ISSUER         the provider's issuer URL (default: from RP_CONFIG, else http://127.0.0.1:5000)
  RP_CLIENT_ID      override RP_CONFIG's client_id
  RP_CLIENT_SECRET  override RP_CONFIG's client_secret
  RP_URL            this app's base URL as registered (default http://127.0.0.1:$RP_PORT)
  RP_PORT           port to listen on (default 5001)
  RP_SCOPE          scopes to ask for (default "openid profile email")
  RP_SECRET_KEY     signs this app's own session cookie (default: a random one per start,
                    which signs its users out at every restart)

Run: `python examples/rp/app.py` (or `make run`, which also starts the provider).
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, abort, redirect, render_template_string, request, session
from joserfc.errors import JoseError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "instance" / "demo-rp.json"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo relying party</title>
<style>
 body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
 table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #ddd; padding: .3rem .5rem;
 text-align: left; vertical-align: top; } th { width: 11rem; } code { word-break: break-all; }
 .button { display: inline-block; padding: .6rem 1.2rem; background: #1f5fbf; color: #fff; border: 0;
 border-radius: .3rem; text-decoration: none; font-size: 1rem; cursor: pointer; } .error { color: #a00; }
</style></head><body>
<h1>Demo relying party</h1>
{% if error %}<p class="error" id="error">Sign-in failed: <strong>{{ error }}</strong>{% if description %}
 ({{ description }}){% endif %}</p>{% endif %}
{% if claims %}
 <p id="greeting">Signed in as <strong>{{ claims.get("email") or claims["sub"] }}</strong>.</p>
 <form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <button class="button" id="sign-out" type="submit">Sign out</button></form>
 <h2>ID token claims</h2>
 <table id="claims">{% for key, value in claims.items() %}
  <tr><th>{{ key }}</th><td><code data-claim="{{ key }}">{{ value | tojson }}</code></td></tr>{% endfor %}</table>
 {% if userinfo %}<h2>UserInfo</h2>
 <table id="userinfo">{% for key, value in userinfo.items() %}
  <tr><th>{{ key }}</th><td><code>{{ value | tojson }}</code></td></tr>{% endfor %}</table>{% endif %}
{% else %}
 <p>This application signs you in with the identity provider at <code>{{ issuer }}</code>.</p>
 <form method="post" action="/login"><button class="button" id="sign-in" type="submit">Sign in</button></form>
{% endif %}
</body></html>"""


class WrongIssuer(Exception):
    """The provider's discovery document names another issuer than the one configured."""


def load_config(environ=os.environ) -> dict:
    path = Path(environ.get("RP_CONFIG") or DEFAULT_CONFIG)
    saved = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(saved, dict):
        raise SystemExit(f"{path} does not hold a JSON object: run `idp demo seed` again")
    port = int(environ.get("RP_PORT", "5001"))
    config = {
        "issuer": (environ.get("RP_ISSUER") or saved.get("issuer") or "http://127.0.0.1:5000").rstrip("/"),
        "client_id": environ.get("RP_CLIENT_ID") or saved.get("client_id"),
        "client_secret": environ.get("RP_CLIENT_SECRET") or saved.get("client_secret"),
        "url": (environ.get("RP_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
        "port": port,
        "scope": environ.get("RP_SCOPE", "openid profile email"),
    }
    if not config["client_id"]:
        raise SystemExit(f"no client: run `idp demo seed` (writes {path}) or set RP_CLIENT_ID/RP_CLIENT_SECRET")
    return config


def create_app(config: dict | None = None) -> Flask:
    config = config or load_config()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("RP_SECRET_KEY") or secrets.token_hex(32),
        # The provider runs on the same host: cookies ignore ports, so the names must differ.
        SESSION_COOKIE_NAME="demo_rp_session",
        SESSION_COOKIE_SAMESITE="Lax",
    )
    oauth = OAuth(app)
    provider = oauth.register(
        "idp",
        client_id=config["client_id"],
        client_secret=config["client_secret"],
        server_metadata_url=f"{config['issuer']}/.well-known/openid-configuration",
        client_kwargs={"scope": config["scope"], "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic" if config["client_secret"] else "none"},
    )
    app.extensions["demo_rp"] = {"config": config, "provider": provider}

    def page(**context):
        return render_template_string(PAGE, issuer=config["issuer"], **context)

    def provider_metadata() -> dict:
        """The discovery document, if it names the configured issuer exactly (OIDC Discovery 4.3):
        otherwise its endpoints and keys may be another provider's."""
        metadata = provider.load_server_metadata()
        if metadata.get("issuer") != config["issuer"]:
            raise WrongIssuer(f"the discovery document names issuer {metadata.get('issuer')!r}, "
                              f"not {config['issuer']!r}")
        return metadata

    @app.errorhandler(WrongIssuer)
    def wrong_issuer(exc):
        return page(error="wrong_issuer", description=str(exc)), 502

    def id_token_checks() -> dict:
        """What the ID token must say besides what Authlib always checks (signature, expiry, nonce):
        our provider as `iss` and us in `aud` (OIDC Core 3.1.3.7). A new dict each time: Authlib
        consumes it."""
        return {"iss": {"essential": True, "value": config["issuer"]},
                "aud": {"essential": True, "value": config["client_id"]}}

    # The `sid`s the provider said have ended (front-channel logout), oldest dropped past a bound.
    ended_sids: OrderedDict[str, None] = OrderedDict()

    @app.before_request
    def forget_an_ended_session():
        claims = session.get("claims") or {}
        if claims.get("sid") and claims["sid"] in ended_sids:
            session.clear()

    @app.get("/frontchannel-logout")
    def frontchannel_logout():
        # OIDC Front-Channel Logout 1.0, section 4: the provider's `iss` names our provider,
        # `sid` the session that ended there. Anyone can load this URL, so it can only end a
        # session whose `sid` it knows: a value no other site learns.
        sid = request.args.get("sid", "")
        if request.args.get("iss") == config["issuer"] and 0 < len(sid) <= 256:
            ended_sids[sid] = None
            while len(ended_sids) > 10_000:
                ended_sids.popitem(last=False)
        return "", 200, {"Cache-Control": "no-cache, no-store"}

    @app.get("/")
    def home():
        return page(claims=session.get("claims"), userinfo=session.get("userinfo"),
                    csrf_token=session.get("csrf_token"))

    @app.post("/login")
    @app.get("/login")
    def login():
        provider_metadata()
        return provider.authorize_redirect(f"{config['url']}/callback")

    @app.get("/callback")
    def callback():
        if "error" in request.args:
            return page(error=request.args["error"], description=request.args.get("error_description")), 400
        provider_metadata()
        try:
            # Exchanges the code and validates the ID token: Authlib raises OAuthError for what the
            # provider answered, joserfc a JoseError for a token that fails a check.
            token = provider.authorize_access_token(claims_options=id_token_checks())
        except (OAuthError, JoseError) as exc:
            return page(error=exc.error or type(exc).__name__, description=exc.description), 400
        claims = dict(token.get("userinfo") or {})
        if not claims:
            abort(502)
        session.clear()
        session["claims"] = claims
        session["id_token"] = token.get("id_token")
        session["csrf_token"] = secrets.token_urlsafe(32)  # for the sign-out form
        session["userinfo"] = userinfo_of(token, claims["sub"])
        return redirect("/")

    def userinfo_of(token: dict, sub: str) -> dict | None:
        """The UserInfo response, if it is about the ID token's user: a different `sub` means its
        values must not be used (OIDC Core 5.3.4)."""
        try:
            userinfo = dict(provider.userinfo(token=token))
        except Exception:  # noqa: BLE001 - the claims are shown even if UserInfo is not reachable
            return None
        if userinfo.get("sub") != sub:
            app.logger.warning("UserInfo ignored: its sub %r is not the ID token's", userinfo.get("sub"))
            return None
        return userinfo

    @app.post("/logout")
    def logout():
        # A POST carrying the token of this session's own page: another site can neither link
        # nor post here to sign the user out (a GET could be an <img> on any page).
        expected = session.get("csrf_token")
        if not expected:
            return redirect("/")  # not signed in: nothing to end
        if not secrets.compare_digest(request.form.get("csrf_token", ""), expected):
            abort(400)
        id_token = session.get("id_token")
        session.clear()
        end_session = provider_metadata().get("end_session_endpoint")
        if not end_session:
            return redirect("/")
        query = {"post_logout_redirect_uri": f"{config['url']}/", "client_id": config["client_id"]}
        if id_token:
            query["id_token_hint"] = id_token
        return redirect(f"{end_session}?{urlencode(query)}")

    return app


def main() -> None:
    config = load_config()
    app = create_app(config)
    print(f"demo relying party on {config['url']} (client {config['client_id']}, issuer {config['issuer']})",
          file=sys.stderr)
    app.run(host="127.0.0.1", port=config["port"], debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
