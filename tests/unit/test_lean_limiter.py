"""idp.security.lean_limiter: decorated limits checked without Flask-Limiter's general resolution,
with the same answers, headers and storage keys as Flask-Limiter's own path."""
from __future__ import annotations

import flask
import pytest
from flask_limiter import Limiter

from idp.security import limiter_storage  # noqa: F401  (the idp-memory:// storage)
from idp.security.lean_limiter import LeanLimiter


def _app(limiter_class, **limiter_options):
    app = flask.Flask(__name__)
    app.config.update(RATELIMIT_STORAGE_URI="idp-memory://", RATELIMIT_STRATEGY="moving-window",
                      RATELIMIT_HEADERS_ENABLED=True)
    limiter = limiter_class(key_func=lambda: flask.request.headers.get("X-Who", "someone"), headers_enabled=True,
                            **limiter_options)
    quiet = {"on": False}

    @app.route("/plain", methods=["GET", "POST"])
    @limiter.limit(lambda: "3 per minute")
    def plain():
        return "plain"

    @app.route("/several")
    @limiter.limit("2 per minute;4 per hour")
    def several():
        return "several"

    @app.route("/exempt-when")
    @limiter.limit("1 per minute", exempt_when=lambda: flask.request.args.get("free") == "1")
    def exempt_when():
        return "exempt_when"

    @app.route("/posts", methods=["GET", "POST"])
    @limiter.limit("1 per minute", methods=["POST"])
    def posts():
        return "posts"

    @app.route("/stacked", methods=["POST"])
    @limiter.limit("3 per minute")
    @limiter.limit("2 per minute", scope="mail")
    def stacked():
        return "stacked"

    @app.route("/unlimited")
    @limiter.exempt
    def unlimited():
        return "unlimited"

    @app.route("/quiet")
    @limiter.limit("1 per minute", exempt_when=lambda: quiet["on"])
    def quiet_view():
        return "quiet"

    limiter.init_app(app)
    return app, limiter


# Each request: (method, path, the caller's key).
_SEQUENCE = (
    [("GET", "/plain", "a")] * 4 + [("POST", "/plain", "a"), ("GET", "/plain", "b")]
    + [("GET", "/several", "a")] * 3
    + [("GET", "/exempt-when?free=1", "a")] * 3 + [("GET", "/exempt-when", "a")] * 2
    + [("GET", "/posts", "a")] * 3 + [("POST", "/posts", "a")] * 2
    + [("POST", "/stacked", "a")] * 4
    + [("GET", "/unlimited", "a")] * 5
)


def _answers(app) -> list[tuple]:
    client = app.test_client()
    answers = []
    for method, path, who in _SEQUENCE:
        response = client.open(path, method=method, headers={"X-Who": who})
        answers.append((method, path, who, response.status_code,
                        {name: value for name, value in response.headers.items()
                         if name.startswith("X-RateLimit") and name != "X-RateLimit-Reset"},
                        "X-RateLimit-Reset" in response.headers, "Retry-After" in response.headers))
    return answers


def _storage_keys(limiter) -> set[str]:
    return {key for key, entries in limiter.limiter.storage.events.items() if entries}


def test_the_lean_path_answers_as_flask_limiter_does():
    ours, ours_limiter = _app(LeanLimiter)
    theirs, theirs_limiter = _app(Limiter)
    answers = _answers(ours)
    assert answers == _answers(theirs)
    statuses = [answer[3] for answer in answers]
    assert statuses[:6] == [200, 200, 200, 429, 429, 200]  # a's budget shared by GET and POST; b's own
    assert statuses[6:9] == [200, 200, 429]
    assert statuses[9:14] == [200, 200, 200, 200, 429]  # exempt requests are not counted
    assert statuses[14:19] == [200, 200, 200, 200, 429]  # GETs are not limited
    assert statuses[19:23] == [200, 200, 429, 429]  # the smaller of the stacked limits
    assert statuses[23:] == [200] * 5
    assert _storage_keys(ours_limiter) == _storage_keys(theirs_limiter)


def _flask_limiters_resolutions(monkeypatch) -> list:
    """The keyword arguments of each call of Flask-Limiter's own check, as they are made."""
    resolved = []
    original = Limiter._check_request_limit
    monkeypatch.setattr(Limiter, "_check_request_limit",
                        lambda self, *args, **kwargs: resolved.append(kwargs) or original(self, *args, **kwargs))
    return resolved


def test_the_lean_path_is_taken_for_plain_decorated_limits(monkeypatch):
    app, _limiter = _app(LeanLimiter)
    resolved = _flask_limiters_resolutions(monkeypatch)
    client = app.test_client()
    assert [client.get("/plain").status_code for _ in range(4)] == [200, 200, 200, 429]
    # (The app-wide before_request check, which idp.extensions drops, still goes through it.)
    assert [call for call in resolved if not call.get("in_middleware", True)] == []


def test_anything_else_goes_through_flask_limiter(monkeypatch):
    """A default limit (which our set-up does not have) is Flask-Limiter's to resolve."""
    app, _limiter = _app(LeanLimiter, default_limits=["100 per minute"])
    resolved = _flask_limiters_resolutions(monkeypatch)
    client = app.test_client()
    assert [client.get("/plain").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [call for call in resolved if not call.get("in_middleware", True)]


@pytest.mark.parametrize("swallow", [False, True])
def test_a_failing_storage_is_handled_as_flask_limiter_handles_it(monkeypatch, swallow):
    app, limiter = _app(LeanLimiter, swallow_errors=swallow)

    def unreachable(*args, **kwargs):
        raise ConnectionError("storage unreachable")

    monkeypatch.setattr(limiter.limiter, "hit", unreachable)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    client = app.test_client()
    if swallow:
        assert client.get("/plain").status_code == 200
    else:
        with pytest.raises(ConnectionError):
            client.get("/plain")
