"""Error pages: bad input gets a clear 4xx, never a 500 page with a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def _wants_json() -> bool:
    return request.path.startswith(("/oauth/", "/factors/")) or request.accept_mimetypes.best == "application/json"


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        if _wants_json():
            return jsonify({"error": "invalid_request", "error_description": error.description}), 400
        return render_template("errors/http.html", code=400, message=error.description), 400

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if _wants_json():
            return jsonify({"error": error.name.lower().replace(" ", "_"), "error_description": error.description}), \
                error.code
        return render_template("errors/http.html", code=error.code, message=error.description), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        from idp.db import db

        db.session.rollback()
        if _wants_json():
            return jsonify({"error": "server_error"}), 500
        return render_template("errors/http.html", code=500, message="Something went wrong."), 500
