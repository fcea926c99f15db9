"""The application factory: the one door through which the server, the CLI and the tests build the app."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask

from idp.config import load_settings
from idp.db import PoolSettings, db
from idp.dispatch import ProviderFlask
from idp.security.cookie_session import CachedSerializerSessionInterface
from idp.security.passwords import Passwords
from idp.security.secrets import KeyRing

PACKAGE_ROOT = __import__("pathlib").Path(__file__).resolve().parent


def session_cookie_name(settings) -> str:
    """The configured name, with the `__Host-` prefix when the issuer is https: a browser then
    keeps the cookie only if it came over HTTPS for this very host (no Domain), so a sibling
    subdomain cannot set or shadow it (session fixation by cookie tossing). A configured
    `__Secure-` prefix becomes `__Host-`: a sibling subdomain may set a `__Secure-` cookie for
    the parent domain. (Browsers read the prefixes whatever their case.)"""
    name = str(settings.get("session.cookie_name", "idp_session"))
    if not settings.issuer.startswith("https://") or name.lower().startswith("__host-"):
        return name
    if name.lower().startswith("__secure-"):
        name = name[len("__secure-"):]
    return "__Host-" + name


def create_app(config_overrides: Mapping[str, Any] | None = None) -> Flask:
    app = ProviderFlask(
        __name__,
        template_folder=str(PACKAGE_ROOT / "templates"),
        static_folder=str(PACKAGE_ROOT / "static"),
        instance_relative_config=True,
    )
    settings = load_settings(config_overrides, instance_path=app.instance_path)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME=session_cookie_name(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.issuer.startswith("https://"),
        SESSION_COOKIE_PATH="/",  # the __Host- prefix wants Path=/ (and no Domain: none is set)
        PERMANENT_SESSION_LIFETIME=int(settings.get("session.lifetime", 43200)),
        # The signed-in session ends at a fixed time (its row's expires_at, set at login), so the
        # cookie's expiry is set when it is written, not pushed back (and re-signed) on every request.
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=256 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the login transaction has its own expiry
        # No Referer check besides the token: the password reset pages are sent with
        # `Referrer-Policy: no-referrer` (their URL holds the link's secret), so their forms
        # post without one. The token, bound to the session cookie (SameSite=Lax), is the check.
        WTF_CSRF_SSL_STRICT=False,
        IDP_SETTINGS=settings,
    )
    app.session_interface = CachedSerializerSessionInterface()
    app.extensions["idp.settings"] = settings
    app.extensions["idp.keyring"] = KeyRing.from_settings(settings.get("security.encryption_keys") or [],
                                                          settings.secret_key)
    from idp.ops import password_hashed

    app.extensions["idp.passwords"] = Passwords(
        time_cost=int(settings.get("security.argon2_time_cost")),
        memory_cost=int(settings.get("security.argon2_memory_cost")),
        parallelism=int(settings.get("security.argon2_parallelism")),
        on_hashed=password_hashed,
    )
    db.init_app(app, settings.database_url, PoolSettings.from_settings(settings))

    from idp import extensions, ops, security_notices

    extensions.init_app(app, settings)
    ops.init_app(app, settings)  # security headers too (idp.security.headers, added as responses start)
    from idp.notify.factory import warn_of_an_unroutable_sender

    warn_of_an_unroutable_sender(settings)  # (once logging is configured, by ops)

    from idp.factors import registry

    registry.init_app(app, settings)
    security_notices.init_app(app, settings)  # mails users about changes to their password and factors

    from idp.oidc import server as oidc_server
    from idp.oidc.views import bp as oidc_bp
    from idp.login.views import bp as login_bp
    from idp.account import password as _account_password  # noqa: F401  (its routes join account_bp)
    from idp.account import applications as _account_applications  # noqa: F401  (its routes join account_bp)
    from idp.account import sessions as _account_sessions  # noqa: F401  (its routes join account_bp)
    from idp.account.views import bp as account_bp
    from idp.admin.views import bp as admin_bp
    from idp import errors

    from idp.login import device_pages, password_reset_pages

    oidc_server.init_app(app, settings)
    from idp.oidc import keys

    ops.add_readiness_check(app, "signing_keys", keys.readiness)
    for blueprint in (oidc_bp, login_bp, device_pages.bp, account_bp, admin_bp):
        app.register_blueprint(blueprint)
    password_reset_pages.init_app(app, settings)  # "Forgot your password?", when [password_reset] enables it
    errors.init_app(app, settings.database_url)
    return app
