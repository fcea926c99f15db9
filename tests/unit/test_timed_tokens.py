"""idp.security.timed_tokens: itsdangerous' timed tokens made and read directly; Flask-WTF's CSRF
tokens through them, each readable by itsdangerous and the other way round."""
from __future__ import annotations

import inspect
import time

import pytest
from flask import Flask, session
from flask_wtf import csrf as flask_wtf_csrf
from flask_wtf.csrf import CSRFProtect, generate_csrf, validate_csrf
from itsdangerous import BadData, BadSignature, SignatureExpired, URLSafeTimedSerializer
from wtforms import ValidationError

from idp.security.timed_tokens import CsrfSerializer, install_csrf_serializer

_SECRET = "csrf-test-secret-key-of-some-length"


@pytest.mark.parametrize("value", ["0123456789abcdef" * 2 + "01234567", "café", {"a": [1, 2]}, 3])
def test_csrf_tokens_read_both_ways(value):
    ours = CsrfSerializer(_SECRET, "wtf-csrf-token")
    theirs = URLSafeTimedSerializer(_SECRET, salt="wtf-csrf-token")
    assert theirs.loads(ours.dumps(value), max_age=60) == value
    assert ours.loads(theirs.dumps(value), max_age=60) == value


def test_another_key_or_salt_does_not_verify():
    token = CsrfSerializer(_SECRET, "wtf-csrf-token").dumps("secret")
    for other in (CsrfSerializer("another-secret-key-of-some-length", "wtf-csrf-token"),
                  CsrfSerializer(_SECRET, "cookie-session")):
        with pytest.raises(BadSignature):
            other.loads(token)


def test_an_old_token_has_expired(monkeypatch):
    ours = CsrfSerializer(_SECRET, "wtf-csrf-token")
    token = ours.dumps("secret")
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(SignatureExpired):
        ours.loads(token, max_age=60)
    assert ours.loads(token) == "secret"  # (no time limit: WTF_CSRF_TIME_LIMIT=None)


@pytest.mark.parametrize("token", ["", "x", "a.b", "a.b.c", "..", "eyJ4Ijox.fQ.not-base64!"])
def test_garbage_is_bad_data(token):
    with pytest.raises(BadData):
        CsrfSerializer(_SECRET, "wtf-csrf-token").loads(token)


def test_flask_wtf_still_builds_its_serializer_by_the_name_we_give_it():
    """install_csrf_serializer replaces that name: a Flask-WTF release that builds its tokens
    another way would bypass it silently (and only cost the time saved)."""
    for function in (flask_wtf_csrf.generate_csrf, flask_wtf_csrf.validate_csrf):
        assert 'URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token")' in inspect.getsource(function)


def test_flask_wtf_signs_and_checks_with_the_cached_serializer():
    install_csrf_serializer()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=_SECRET, WTF_CSRF_TIME_LIMIT=None)
    CSRFProtect(app)

    @app.route("/form", methods=["GET", "POST"])
    def form():
        return generate_csrf()

    client = app.test_client()
    token = client.get("/form").get_data(as_text=True)
    with app.test_request_context():
        assert isinstance(flask_wtf_csrf.URLSafeTimedSerializer(_SECRET, salt="wtf-csrf-token"), CsrfSerializer)
        # any other use of that name is itsdangerous' own class
        assert isinstance(flask_wtf_csrf.URLSafeTimedSerializer(_SECRET, salt="other"), URLSafeTimedSerializer)
    with client.session_transaction() as stored:
        assert URLSafeTimedSerializer(_SECRET, salt="wtf-csrf-token").loads(token) == stored["csrf_token"]
    assert client.post("/form", data={"csrf_token": token}).status_code == 200
    assert client.post("/form", data={"csrf_token": token[:-2] + "xx"}).status_code == 400
    assert client.post("/form", data={}).status_code == 400
    with app.test_request_context():
        session["csrf_token"] = "another secret"
        with pytest.raises(ValidationError, match="do not match"):
            validate_csrf(token)
