"""Push recovery by password (`POST /factors/qr_recovery/personal/start`) is rate-limited per address
like the login form's POSTs (`ratelimit.login_posts_per_ip`, Flask-Limiter), on a live server over
HTTP; the setting that lifts the login's limit (the bench's) lifts this one too."""
from __future__ import annotations

import pytest
import requests

from fixtures.oidc import seed, start_server
from recovery_kit import audit_events, enable_recovery


@pytest.fixture
def limited_server(migrated_database_url):
    server = enable_recovery(start_server(migrated_database_url, {"ratelimit.login_posts_per_ip": "3 per minute"}))
    yield server
    server.stop()


def start(server, email: str, password: str) -> requests.Response:
    return requests.post(server.url + "/factors/qr_recovery/personal/start",
                         json={"email": email, "password": password}, timeout=10)


def test_password_guesses_beyond_the_login_forms_rate_are_refused_before_they_are_checked(limited_server):
    seeded = seed(limited_server)
    answered = [start(limited_server, seeded.user_email, "wrong password").status_code for _ in range(3)]
    assert answered == [401, 401, 401]
    refused = start(limited_server, seeded.user_email, seeded.password)  # even the right one: not looked at
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "too_many_attempts" and isinstance(body["retry_after"], int) and body["retry_after"] > 0
    assert refused.headers["Retry-After"] == str(body["retry_after"])
    # Only the three answered requests were guesses: the fourth reached neither argon2 nor the log.
    assert len(audit_events(limited_server, "recover.password_failed")) == 3


@pytest.mark.parametrize("path", ["/redeem", "/personal/finish"])
def test_the_signed_device_requests_are_limited_per_address_too(limited_server, path):
    """Each stores its jti before anything else is read: unlimited, anyone could fill the table."""
    answered = [requests.post(limited_server.url + "/factors/qr_recovery" + path, json={"request": "not a JWS"},
                              timeout=10).status_code for _ in range(4)]
    assert answered[:3] == [400] * 3 and answered[3] == 429


def test_the_setting_that_lifts_the_login_forms_limit_lifts_this_one(migrated_database_url):
    server = enable_recovery(start_server(migrated_database_url,
                                          {"ratelimit.login_posts_per_ip": "1000000 per 1 minute"}))  # bench/run.py
    try:
        seeded = seed(server)
        assert {start(server, seeded.user_email, "wrong password").status_code for _ in range(5)} == {401}
    finally:
        server.stop()
