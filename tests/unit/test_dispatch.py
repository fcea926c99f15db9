"""idp.dispatch: client endpoints skip the request hooks, and keep everything else a response needs."""
from __future__ import annotations

import pytest
from flask import abort, jsonify, request, session

from idp import extensions, ops
from idp.config import load_settings
from idp.db import db
from idp.dispatch import ProviderFlask, client_endpoint
from idp.security.cookie_session import CachedSerializerSessionInterface


@pytest.fixture
def client(tmp_path):
    settings = load_settings({"server.database_url": f"sqlite:///{tmp_path / 'dispatch.sqlite'}"})
    app = ProviderFlask("dispatch-test")
    app.config["SECRET_KEY"] = "dispatch-test-secret-key-of-some-length"
    app.session_interface = CachedSerializerSessionInterface()  # as idp.app.create_app sets it
    db.init_app(app, settings.database_url)
    extensions.init_app(app, settings)  # the CSRF hook among others
    ops.init_app(app, settings)
    calls = []

    @app.route("/api/echo", methods=["POST"])
    @client_endpoint
    def echo():
        calls.append("echo")
        return jsonify(form=request.form.to_dict())

    @app.post("/api/teapot")
    @client_endpoint
    def teapot():
        abort(418)

    @app.post("/api/boom")
    @client_endpoint
    def boom():
        raise RuntimeError("boom")

    @app.post("/api/session")
    @client_endpoint
    def read_session():
        return jsonify(seen=session.get("seen"))

    @app.post("/api/write-session")
    @client_endpoint
    def write_session():
        session["seen"] = True
        return "written"

    @app.get("/page")
    def page():  # a browser page: it has the cookie session
        session["seen"] = True
        return "page"

    @app.post("/form")
    def form():  # not a client endpoint: the CSRF hook applies
        return "posted"

    test_client = app.test_client()
    test_client.calls = calls
    return test_client


def test_a_client_endpoint_answers_without_a_csrf_token(client):
    response = client.post("/api/echo", data={"grant_type": "x"})
    assert response.status_code == 200 and response.get_json() == {"form": {"grant_type": "x"}}
    assert client.post("/form").status_code == 400  # the hook still guards everything unmarked


def test_errors_take_flasks_usual_path(client):
    assert client.post("/api/teapot").status_code == 418
    assert client.post("/api/boom").status_code == 500


def test_a_client_endpoint_has_no_browser_session(client):
    assert "Set-Cookie" in client.get("/page").headers  # the browser now holds a session cookie
    response = client.post("/api/session")
    assert response.get_json() == {"seen": None} and "Set-Cookie" not in response.headers
    assert client.post("/api/write-session").status_code == 500  # writing to it is a programming error


def test_a_client_endpoint_takes_a_fixed_path(tmp_path):
    from idp.dispatch import client_endpoint_paths

    app = ProviderFlask("dispatch-paths-test")

    @app.post("/api/items/<int:item>")
    @client_endpoint
    def item(item):
        return "item"

    with pytest.raises(RuntimeError, match="takes no arguments"):
        client_endpoint_paths(app)


def test_options_is_answered_by_flask_not_the_view(client):
    response = client.options("/api/echo")
    assert response.status_code == 200 and "POST" in response.headers["Allow"] and client.calls == []


def test_metrics_label_the_rule(client):
    client.post("/api/echo")
    lines = client.get("/metrics").get_data(as_text=True).splitlines()
    assert any(line.startswith("idp_http_requests_total{") and 'endpoint="/api/echo"' in line
               and 'status="200"' in line for line in lines)
