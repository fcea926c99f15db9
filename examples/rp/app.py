"""A tiny relying party: signs in through the provider and shows what it learned.

It uses only the provider's public protocol, through Authlib's Flask client:
OpenID Connect discovery, the authorization code flow with PKCE (S256), ID token
validation against the JWKS (signature, issuer, audience, nonce), UserInfo,
and RP-initiated logout through the end_session_endpoint.

Configuration (environment), with `make run` filling it in:
  RP_CONFIG         JSON file with issuer, client_id, client_secret (`idp demo seed` writes it)
  RP_ISSUER         the provider's issuer URL (default: from RP_CONFIG, else http://127.0.0.1:5000)
  RP_CLIENT_ID      override RP_CONFIG's client_id
  RP_CLIENT_SECRET  override RP_CONFIG's client_secret
  RP_URL            this app's base URL as registered (default http://127.0.0.1:$RP_PORT)
  RP_PORT           port to listen on (default 5001)
  RP_SCOPE          scopes to ask for (default "openid profile email")

Run: `python examples/rp/app.py` (or `make run`, which also starts the provider).
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, abort, redirect, render_template_string, request, session

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
 <p id="greeting">Signed in as <strong>{{ claims.get("email") or claims["sub"] }}</strong>.
  <a href="/logout" id="sign-out">Sign out</a></p>
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


def load_config(environ=os.environ) -> dict:
    path = Path(environ.get("RP_CONFIG") or DEFAULT_CONFIG)
    saved = {}
    if path.exists():
        saved = json.loads(path.read_text())
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

    @app.get("/")
    def home():
        return page(claims=session.get("claims"), userinfo=session.get("userinfo"))

    @app.post("/login")
    @app.get("/login")
    def login():
        return provider.authorize_redirect(f"{config['url']}/callback")

    @app.get("/callback")
    def callback():
        if "error" in request.args:
            return page(error=request.args["error"], description=request.args.get("error_description")), 400
        try:
            token = provider.authorize_access_token()  # exchanges the code, validates the ID token
        except OAuthError as exc:
            return page(error=exc.error, description=exc.description), 400
        claims = dict(token.get("userinfo") or {})
        if not claims:
            abort(502)
        session.clear()
        session["claims"] = claims
        session["id_token"] = token.get("id_token")
        try:
            session["userinfo"] = dict(provider.userinfo(token=token))
        except Exception:  # noqa: BLE001 - the claims are shown even if UserInfo is not reachable
            session["userinfo"] = None
        return redirect("/")

    @app.get("/logout")
    def logout():
        id_token = session.get("id_token")
        session.clear()
        end_session = provider.load_server_metadata().get("end_session_endpoint")
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
