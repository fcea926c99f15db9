"""idp.dispatch: client endpoints skip the request hooks, and keep everything else a response needs."""
from __future__ import annotations

import pytest
from flask import abort, jsonify, request, session

from idp import extensions, ops
from idp.config import load_settings
from idp.db import db
from idp.dispatch import ProviderFlask, client_endpoint


@pytest.fixture
def client(tmp_path):
    settings = load_settings({"server.database_url": f"sqlite:///{tmp_path / 'dispatch.sqlite'}"})
    app = ProviderFlask("dispatch-test")
    app.config["SECRET_KEY"] = "dispatch-test-secret-key-of-some-length"
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
    def touch_session():
        session["seen"] = True
        return "ok"

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


def test_the_session_is_still_saved(client):
    assert "Set-Cookie" in client.post("/api/session").headers


def test_options_is_answered_by_flask_not_the_view(client):
    response = client.options("/api/echo")
    assert response.status_code == 200 and "POST" in response.headers["Allow"] and client.calls == []


def test_metrics_label_the_rule(client):
    client.post("/api/echo")
    lines = client.get("/metrics").get_data(as_text=True).splitlines()
    assert any(line.startswith("idp_http_requests_total{") and 'endpoint="/api/echo"' in line
               and 'status="200"' in line for line in lines)
