"""idp.security.cookie_session: the session cookie signed and read as Flask's serializer does, each
readable by the other; the CSRF token's secret given to a session written anyway."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect, generate_csrf
from itsdangerous import BadPayload, BadSignature, SignatureExpired

from idp.security.cookie_session import CachedSerializerSessionInterface, LeanSessionSerializer

_PLAIN_SESSIONS = [
    {"browser": "Zq3-abcdefghijklmnopqrstuvwxyz0"},
    {"browser": "b" * 32, "csrf_token": "0123456789abcdef" * 2 + "01234567", "sso": "s" * 43, "_permanent": True,
     "locale": "fr"},
    {"count": 3, "ratio": 0.5, "nothing": None, "élan": "café"},
    {},
]
# What only Flask's tagged JSON can hold: flashed messages (tuples), bytes, dates, nested values,
# and a dict whose one key is a tag.
_TAGGED_SESSIONS = [
    {"_flashes": [("message", "Signed out")]},
    {"raw": b"\x00\x01", "when": datetime(2026, 12, 4, tzinfo=timezone.utc)},
    {"nested": {"a": 1}},
    {" t": ["x"]},
]


def _serializers(secret="session-test-secret-key-of-some-length", fallbacks=()):
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret, SECRET_KEY_FALLBACKS=list(fallbacks))
    with app.app_context():
        ours = CachedSerializerSessionInterface().get_signing_serializer(app)
        flasks = SecureCookieSessionInterface().get_signing_serializer(app)
    return app, ours, flasks


@pytest.mark.parametrize("data", _PLAIN_SESSIONS + _TAGGED_SESSIONS)
def test_each_reads_the_others_cookies(data):
    app, ours, flasks = _serializers()
    assert isinstance(ours, LeanSessionSerializer)
    with app.app_context():
        assert flasks.loads(ours.dumps(data), max_age=60) == data
        assert ours.loads(flasks.dumps(data), max_age=60) == data
        assert ours.loads(ours.dumps(data), max_age=60) == data


def test_plain_sessions_are_signed_in_flasks_format_without_compression():
    app, ours, flasks = _serializers()
    data = {"browser": "x" * 40, "csrf_token": "a" * 40}  # (Flask compresses this one)
    with app.app_context():
        cookie = ours.dumps(data)
        assert not cookie.startswith(".")
        payload, stamp, signature = cookie.split(".")
        assert flasks.loads(cookie) == data and flasks.dumps(data).startswith(".")


def test_a_fallback_key_still_verifies_and_the_new_key_signs():
    app, old_ours, old_flasks = _serializers("the-old-secret-key-of-some-length")
    app, ours, flasks = _serializers("the-new-secret-key-of-some-length", fallbacks=["the-old-secret-key-of-some-length"])
    with app.app_context():
        for old in (old_ours, old_flasks):
            assert ours.loads(old.dumps({"browser": "b"})) == {"browser": "b"}
        with pytest.raises(BadSignature):
            old_ours.loads(ours.dumps({"browser": "b"}))
        with pytest.raises(BadSignature):
            old_flasks.loads(ours.dumps({"browser": "b"}))


@pytest.mark.parametrize("tamper", [
    lambda cookie: cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"),  # the signature
    lambda cookie: "f" + cookie[1:],  # the payload
    lambda cookie: cookie.replace(".", "", 1),  # no timestamp
    lambda cookie: cookie.rsplit(".", 1)[0],  # no signature
    lambda cookie: "",
    lambda cookie: "not a cookie at all",
])
def test_a_tampered_cookie_is_a_bad_signature(tamper):
    app, ours, flasks = _serializers()
    with app.app_context():
        cookie = tamper(ours.dumps({"browser": "b" * 32}))
        with pytest.raises(BadSignature):
            flasks.loads(cookie)
        with pytest.raises(BadSignature):
            ours.loads(cookie)


def test_characters_outside_base64_are_ignored_as_flask_ignores_them():
    app, ours, flasks = _serializers()
    with app.app_context():
        cookie = ours.dumps({"browser": "b" * 32}) + "é"
        assert ours.loads(cookie) == flasks.loads(cookie) == {"browser": "b" * 32}


def test_an_old_cookie_has_expired(monkeypatch):
    app, ours, flasks = _serializers()
    with app.app_context():
        cookie = ours.dumps({"browser": "b"})
        later = time.time() + 120
        monkeypatch.setattr(time, "time", lambda: later)
        with pytest.raises(SignatureExpired):
            ours.loads(cookie, max_age=60)
        with pytest.raises(SignatureExpired):
            flasks.loads(cookie, max_age=60)
        assert ours.loads(cookie, max_age=600) == {"browser": "b"}


def test_a_signed_payload_that_is_no_json_is_a_bad_payload_as_for_flask():
    """(Only someone holding the secret key can make one.)"""
    app, ours, flasks = _serializers()
    signer = flasks.make_signer(flasks.salt)
    with app.app_context():
        cookie = signer.sign(b"bm90IGpzb24").decode()  # base64 of "not json"
        with pytest.raises(BadPayload):
            flasks.loads(cookie)
        with pytest.raises(BadPayload):
            ours.loads(cookie)


def test_a_session_written_anyway_gets_its_csrf_secret_and_the_form_page_then_writes_nothing():
    app = Flask(__name__)
    app.config.update(SECRET_KEY="session-test-secret-key-of-some-length")
    app.session_interface = CachedSerializerSessionInterface()
    CSRFProtect(app)

    @app.get("/begin")
    def begin():
        session["browser"] = "b" * 32
        return "begun"

    @app.get("/form")
    def form():
        return generate_csrf()

    @app.get("/nothing")
    def nothing():
        return "nothing"

    client = app.test_client()
    assert "Set-Cookie" not in client.get("/nothing").headers  # an empty session stays unwritten
    assert "Set-Cookie" in client.get("/begin").headers
    with client.session_transaction() as stored:
        secret = stored["csrf_token"]
        assert len(secret) == 40 and stored["browser"] == "b" * 32
    page = client.get("/form")
    assert "Set-Cookie" not in page.headers  # the token's secret was there already
    with client.session_transaction() as stored:
        assert stored["csrf_token"] == secret
