"""Error pages: bad input gets a clear 4xx, never a 500 page with a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from idp.extensions import seconds_until_allowed
from idp.ops import logged_path  # the path as the access line writes it: no login handle in the logs

log = logging.getLogger(__name__)

# The HTML pages speak the user's language; werkzeug's default descriptions are English only.
# A description written on purpose (abort(404, "...")) is shown as it is.
_PAGE_MESSAGES = {
    400: _l("The request could not be understood. Go back and try again."),
    403: _l("You are not allowed to see this page."),
    404: _l("This page does not exist."),
    405: _l("This page cannot be used this way."),
    413: _l("The request is too large."),
    429: _l("Too many requests. Wait a moment and try again."),
}


def _page_message(error: HTTPException) -> str:
    # Flask-Limiter describes its refusal by the limit broken ("60 per 1 minute"): not for people.
    if isinstance(error, RateLimitExceeded) or (error.description == type(error).description
                                                 and error.code in _PAGE_MESSAGES):
        return str(_PAGE_MESSAGES[error.code])
    return error.description


def _page(code: int, message: str):
    """The error page, or, when the request has no URL builder to render one with (a Host that
    werkzeug cannot bind, a DNS label over 63 characters: its BadHost), the same message as plain
    text. (The page's url_for then failed, and so did the 500 page after it: the server answered
    its own 500, with the raw path in Flask's log line, until an audit found it.)"""
    from flask.globals import request_ctx

    if request_ctx.url_adapter is None:
        return Response(f"{code}: {message}\n", code, mimetype="text/plain")
    return render_template("errors/http.html", code=code, message=message)


def _wants_json() -> bool:
    return request.path.startswith(("/oauth/", "/factors/")) or request.accept_mimetypes.best == "application/json"


def _driver_data_errors(database_url: str) -> tuple[type[Exception], ...]:
    """psycopg's own DataError: the prebuilt statements (idp.lone, `db.run`) run on the DBAPI
    connection, outside SQLAlchemy's wrapping. Only on PostgreSQL: importing psycopg costs every
    `idp` command on SQLite 40 ms."""
    if not database_url.startswith("postgresql"):
        return ()
    try:
        import psycopg
    except ImportError:  # pragma: no cover - an SQLite-only installation
        return ()
    return (psycopg.DataError,)


def init_app(app: Flask, database_url: str = "") -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        if _wants_json():
            return jsonify({"error": "invalid_request", "error_description": error.description}), 400
        return _page(400, _("This form has expired or was not sent from this site. "
                            "Go back, reload the page and try again.")), 400

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        # The exception's own headers, its body's aside: a 405's Allow (RFC 9110 15.5.6), a 429's Retry-After.
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        if isinstance(error, RateLimitExceeded):  # outside the login pages no limiter hook adds it
            headers.append(("Retry-After", str(seconds_until_allowed())))
        if _wants_json():
            return jsonify({"error": error.name.lower().replace(" ", "_"), "error_description": error.description}), \
                error.code, headers
        return _page(error.code, _page_message(error)), error.code, headers

    def _unstorable(error: Exception):
        """A value the database refused (on PostgreSQL: a NUL in text, a number out of its column's
        range): the request's bad input, not our failure. The edges refuse such values first
        (idp.security.text); this is the net for the ones they miss. Whatever the request had
        written is rolled back: nothing half-done is committed by a later step."""
        from idp.db import db

        db.session.rollback()
        cause = getattr(error, "orig", None) or error
        log.warning("the database refused a value of %s %s: %s", request.method, logged_path(),
                    type(cause).__name__, extra={"fields": {"reason": (str(cause).splitlines() or [""])[0][:200]}})
        if _wants_json():
            return jsonify({"error": "invalid_request"}), 400
        return _page(400, str(_PAGE_MESSAGES[400])), 400

    for data_error in (DataError, *_driver_data_errors(database_url)):
        app.register_error_handler(data_error, _unstorable)

    @app.errorhandler(UnicodeEncodeError)
    def _unencodable(error: UnicodeEncodeError):
        """A lone surrogate, which a JSON body may spell ("\\ud800") and no UTF-8 encoder accepts
        (a password hashed, a value sent to the database): bad input, as above. Any other
        encoding failure is ours."""
        if "surrogate" in str(error.reason):
            return _unstorable(error)
        return _unexpected(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, logged_path())
        from idp.db import db

        db.session.rollback()
        if _wants_json():
            return jsonify({"error": "server_error"}), 500
        return _page(500, _("Something went wrong.")), 500
