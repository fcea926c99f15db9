"""idp.security.cookie_session: the CSRF token's secret given to a session written anyway."""
from __future__ import annotations

from flask import Flask, session
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect, generate_csrf

from idp.security.cookie_session import CachedSerializerSessionInterface


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

    @app.post("/form")
    def post_form():
        return "valid" if FlaskForm().validate_on_submit() else "refused"

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
    assert client.post("/form", data={"csrf_token": page.get_data(as_text=True)}).get_data(as_text=True) == "valid"
    assert client.post("/form", data={"csrf_token": "forged"}).status_code == 400
