"""Flask extensions shared by the blueprints: CSRF, rate limits, translations."""
from __future__ import annotations

import math
import time
from pathlib import Path

from flask import Flask, current_app, g, has_request_context, request, session
from flask_babel import Babel, get_locale, refresh
from flask_wtf.csrf import CSRFProtect

from idp.config import Settings
from idp import template_i18n
from idp.security import limiter_storage  # noqa: F401  (registers the idp-memory:// storage)
from idp.security.lean_limiter import LeanLimiter
from idp.security.guess_keys import address_key

SUPPORTED_LOCALES = ("en", "fr")

csrf = CSRFProtect()
babel = Babel()


def client_address() -> str:
    """The caller's address as seen after ProxyFix (trusted proxies only), as per-address limits
    count it (an IPv6 address's /64: idp.security.guess_keys), the rate-limit key."""
    return address_key(request.remote_addr) if request.remote_addr else "unknown"


# Flask-Limiter, its decorated limits checked without the general resolution (idp.security.lean_limiter).
limiter = LeanLimiter(key_func=client_address, default_limits=[], headers_enabled=True)


def login_posts_per_ip() -> str:
    """The login forms' request rate per address (`ratelimit.login_posts_per_ip`), which the device
    endpoints that take a password share (idp.factors.ratelimit)."""
    return current_app.extensions["idp.settings"].get("ratelimit.login_posts_per_ip", "60 per minute")


FALLBACK_RETRY_AFTER = 60  # seconds, should the limiter not say when its window frees a request


def seconds_until_allowed() -> int:
    """When the limit this request broke lets the next one through (a `Retry-After`)."""
    current = limiter.current_limit
    if current is None:
        return FALLBACK_RETRY_AFTER
    return max(1, math.ceil(current.reset_at - time.time()))


def select_locale() -> str | None:
    """The user's choice (ui_locales, the language form) or else the browser's Accept-Language."""
    if not has_request_context():  # CLI, startup: lazy strings render in the default locale
        return None
    # First match wins (docs/translations.md): a ui_locales tag we support (this request's, else
    # that of the login whose page this is: use_login_ui_locales), then the session's choice (the
    # language form's alone), then Accept-Language. A ui_locales of languages we lack falls through.
    for chosen in (request.args.get("ui_locales"), g.get("idp_login_ui_locales"), session.get("locale")):
        supported = supported_locale(chosen)
        if supported:
            return supported
    return browser_locale() or "en"


def browser_locale() -> str | None:
    """The first language of Accept-Language, in the browser's order of preference, that we speak
    (each tag by its language: "fr-CA" is French). Not werkzeug's `best_match`, which takes an
    exact tag anywhere in the list before a regional one: "fr-CA,en;q=0.1" was English, and
    "en-GB,fr;q=0.5" French."""
    for tag, quality in request.accept_languages:  # sorted by quality, then as the browser sent them
        supported = supported_locale(tag) if quality > 0 else None
        if supported:
            return supported
    return None


def supported_locale(tags: str | None) -> str | None:
    """The first language of `tags` (space-separated, as OIDC ui_locales) that we speak, or None."""
    for tag in (tags or "").split():
        base = tag.split("-")[0].lower()
        if base in SUPPORTED_LOCALES:
            return base
    return None


def request_locale() -> str | None:
    """The language this request's pages speak (select_locale's choice), None outside a request:
    what mail about something the user did here is written in when they chose none."""
    return str(get_locale()) if has_request_context() else None


def use_login_ui_locales(tags: str | None) -> None:
    """This request is a page of a login that an application started with OIDC `ui_locales`
    (the login transaction's snapshot, already loaded: no query): the page speaks that language.
    It lasts as long as the login; the browser's own choice (session["locale"]) is left alone."""
    g.idp_login_ui_locales = tags
    if tags:
        refresh()  # should anything have asked for the locale before the transaction was loaded


def _confine_limiter_to_login(app: Flask) -> None:
    """Keep only the Flask-Limiter request hooks our one limit needs, and only where it applies.

    Our one limit (`login_posts_per_ip`) is a decorator on the login step view (and on the device
    endpoints that take a password, idp.factors.ratelimit, which answer their 429 themselves),
    and Flask-Limiter checks decorated limits inside the decorated view itself. The app-wide
    before_request check that `init_app` registers serves only default and application-wide
    limits, which we do not use: it is dropped. Writing the X-RateLimit headers (after_request)
    and resetting the limiter's request context (teardown) move under the login blueprint. Together the three
    hooks cost about a third of a token grant's CPU. (A default limit added later would need the
    before_request check back.)
    """
    found = 0
    for hooks, keep in ((app.before_request_funcs, False), (app.after_request_funcs, True),
                        (app.teardown_request_funcs, True)):
        app_wide = hooks.get(None, [])
        for hook in [hook for hook in app_wide if _belongs_to_limiter(hook)]:
            app_wide.remove(hook)
            found += 1
            if keep:
                hooks.setdefault("login", []).append(hook)
    if found != 3:  # a Flask-Limiter upgrade that changes its hooks must not pass silently
        raise RuntimeError(f"expected Flask-Limiter's three request hooks, found {found}")


def _belongs_to_limiter(hook) -> bool:
    owner = getattr(hook, "__self__", None)  # bound methods: _check_request_limit, __release_context
    if owner is None and getattr(hook, "args", None):  # functools.partial(Limiter.__inject_headers, limiter)
        owner = hook.args[0]
    return owner is limiter


def init_app(app: Flask, settings: Settings) -> None:
    csrf.init_app(app)
    # Without Redis, limits are kept per process in memory (idp.security.limiter_storage).
    app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url or "idp-memory://"
    app.config["RATELIMIT_STRATEGY"] = "moving-window"
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)
    _confine_limiter_to_login(app)
    if settings.redis_url:
        import redis

        # A connection that cannot be made fails in 2 s instead of hanging a worker (and /readyz).
        app.extensions["idp.redis"] = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(Path(__file__).resolve().parent / "translations")
    babel.init_app(app, locale_selector=select_locale)
    template_i18n.install(app)
    # Templates name the page's language (<html lang>, the language form's selected option).
    app.jinja_env.globals["get_locale"] = get_locale
