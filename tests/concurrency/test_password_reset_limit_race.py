"""Requests for a reset link posted at once from one address (`password_reset.per_ip`, idp.password_reset):
no more pass than the limit, whether the limiter counts in the process's memory or in Redis, and
with Redis across several workers (two servers on one database and one Redis here)."""
from __future__ import annotations

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, start_server
from fixtures.race import at_once
from fixtures.redis_server import private_redis
from test_factor_races import _pg_server

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

POSTS = 12
LIMIT = 3


@pytest.fixture
def redis_url():
    """A Redis of this test's own (the limiter's counts start at nothing)."""
    yield from private_redis()


def _post_at_once(servers) -> list[int]:
    """POSTS requests for links of addresses no account has, spread over `servers`, at once."""
    posts = []
    for i in range(POSTS):
        server = servers[i % len(servers)]
        browser = FormBrowser(server.url)
        page = browser.get("/password/forgot")
        form = page.form_with("username")
        session = browser.http
        posts.append((session, form["action"], dict(form["fields"], username=f"nobody{i}@nowhere.test")))
    return at_once(POSTS, lambda i: posts[i][0].post(posts[i][1], data=posts[i][2], allow_redirects=False,
                                                     timeout=30).status_code)


def test_requests_at_once_in_one_process_pass_up_to_the_limit(postgres_url):
    server = _pg_server(postgres_url, {"password_reset.per_ip": f"{LIMIT} per hour"})
    try:
        statuses = _post_at_once([server])
    finally:
        server.stop()
    assert sorted(statuses) == [303] * LIMIT + [429] * (POSTS - LIMIT), statuses


def test_requests_at_once_to_two_workers_sharing_redis_pass_up_to_the_limit(postgres_url, redis_url):
    overrides = {"password_reset.per_ip": f"{LIMIT} per hour", "server.redis_url": redis_url}
    first = _pg_server(postgres_url, overrides)
    second = start_server(postgres_url, overrides)
    try:
        statuses = _post_at_once([first, second])
    finally:
        first.stop()
        second.stop()
    assert sorted(statuses) == [303] * LIMIT + [429] * (POSTS - LIMIT), statuses
