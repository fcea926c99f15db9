"""Request bodies of the plugins' device endpoints, read without a 500 whatever was posted.

Flask's `request.get_json(silent=True)` turns only a ValueError into None: brackets nested tens of
thousands deep (`"[" * 100000 + "]" * 100000`, 200 KB, under MAX_CONTENT_LENGTH) make the
decoder raise RecursionError, which escaped as a 500. Every device endpoint that reads a JSON
body goes through `json_object`, which treats that like any other body that is not a JSON object.
"""
from __future__ import annotations

from flask import request


def json_object() -> dict | None:
    """This request's JSON body when it is a JSON object, else None (absent, not JSON, another
    JSON value, or nested too deep to decode): the caller answers its protocol's 400."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        return None
    return data if isinstance(data, dict) else None
