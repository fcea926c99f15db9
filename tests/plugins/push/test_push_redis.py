"""Two app instances sharing a database and a Redis: a challenge created on one wakes a device's
long-poll waiting on the other at once (Redis pub/sub), not at the next database check."""
from __future__ import annotations

import threading
import time

import pytest

from fixtures.redis_server import private_redis
from idp.factors.testing import waiting_login
from push_testkit import enable_push, give_device


@pytest.fixture
def redis_url():
    """A Redis of this test's own (its channels carry no other test's events)."""
    yield from private_redis()


def test_challenge_on_a_wakes_long_poll_on_b(migrated_database_url, redis_url):
    from fixtures.oidc import seed, start_server
    from idp.factors import directory
    from idp.factors.registry import current_registry

    a = enable_push(start_server(migrated_database_url, {"server.redis_url": redis_url}))
    b = enable_push(start_server(migrated_database_url, {"server.redis_url": redis_url}))
    try:
        seeded = seed(a)
        device = give_device(b, seeded.user_email)
        with b.context():
            # Make B's database fallback slow, so only a Redis message can wake it quickly.
            current_registry().get("push").waker().fallback_interval = 5.0
        result = {}

        def long_poll():
            started = time.monotonic()
            result["challenges"] = device.pending(wait=15)
            result["returned_at"] = time.monotonic()
            result["started"] = started

        waiting = threading.Thread(target=long_poll)
        waiting.start()
        time.sleep(0.5)  # B is now waiting
        with a.context():
            user = directory.find_user_by_email(seeded.user_email)
            push = current_registry().get("push")
            waiting_login("t-redis", "push")  # (a phone lists the requests of a login waiting on push)
            ctx = current_registry().context(push, transaction_id="t-redis", client_name="X",
                                             remote_addr="127.0.0.1", user_agent="test")
            created = time.monotonic()
            push.begin_challenge(user, ctx)
        waiting.join(20)
        assert len(result["challenges"]) == 1
        assert result["returned_at"] - created < 1.0, "woken by Redis, not by the 5 s database fallback"
    finally:
        a.stop()
        b.stop()
