"""Growing lockouts, on the database and on Redis (both shared across processes)."""
from __future__ import annotations

import socket
import uuid

import pytest


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["database", "redis"])
def app(request, migrated_database_url):
    from idp.app import create_app

    overrides = {"server.database_url": migrated_database_url, "ratelimit.factor_failures_before_lockout": 3,
                 "ratelimit.factor_lockout_seconds": 10}
    if request.param == "redis":
        if not _redis_up():
            pytest.skip("no Redis on 127.0.0.1:6379")
        overrides["server.redis_url"] = "redis://127.0.0.1:6379/15"
    return create_app(overrides)


def test_lockout_grows_and_clears(app):
    from idp import lockout

    key = [f"factor:user:{uuid.uuid4().hex}"]
    with app.app_context():
        assert lockout.check(key) == 0
        assert lockout.fail(key) == 0 and lockout.fail(key) == 0
        first = lockout.fail(key)
        assert first == 10 and 9 <= lockout.check(key) <= 11
        assert lockout.fail(key) == 20  # doubles
        lockout.succeed(key)
        assert lockout.check(key) == 0


def test_address_keys_have_their_own_higher_threshold(app):
    from idp import lockout

    key = [f"factor:ip:{uuid.uuid4().hex}"]
    with app.app_context():
        for _ in range(10):
            assert lockout.fail(key) == 0


def test_redis_failure_falls_back_to_the_database(migrated_database_url):
    """A dead Redis must not turn a login into a 500: the counters use the database meanwhile."""
    from idp import lockout
    from idp.app import create_app

    app = create_app({"server.database_url": migrated_database_url, "server.redis_url": "redis://127.0.0.1:1/0",
                      "ratelimit.factor_failures_before_lockout": 1, "ratelimit.factor_lockout_seconds": 10})
    key = [f"factor:user:{uuid.uuid4().hex}"]
    with app.app_context():
        assert lockout.check(key) == 0
        assert lockout.fail(key) == 10
        assert lockout.check(key) >= 9
        lockout.succeed(key)
        from idp.db import db

        db.session.commit()
        assert lockout.check(key) == 0


def test_reserve_counts_the_guess_first_and_locks_at_the_threshold(app):
    from idp import lockout
    from idp.db import db

    key = f"factor:user:{uuid.uuid4().hex}"
    with app.app_context():
        for _ in range(3):  # the third reaches the threshold: still checked, and it locks at once
            assert lockout.reserve(key) == 0
            db.session.commit()
        assert 9 <= lockout.check([key]) <= 11
        assert 9 <= lockout.reserve(key) <= 11  # refused, and not counted
        db.session.commit()
        lockout.succeed([key])  # the guess checked last was right: its failure is taken back
        db.session.commit()
        assert lockout.check([key]) == 0 and lockout.reserve(key) == 0


def _request(app, guess):
    """One request's guess (its own app context, so its own `g`), committed as a request's is."""
    from idp.db import db

    with app.app_context():
        result = guess()
        db.session.commit()
        return result


def test_release_takes_back_one_guess_and_keeps_the_others(app):
    from idp import lockout

    key = f"factor:user:{uuid.uuid4().hex}"
    for _ in range(2):
        assert _request(app, lambda: lockout.reserve(key)) == 0

    def right_guess():  # the second guess was right
        lockout.release(key)

    _request(app, right_guess)
    assert _request(app, lambda: lockout.reserve(key)) == 0  # two failures now: not locked
    assert _request(app, lambda: lockout.check([key])) == 0
    assert _request(app, lambda: lockout.reserve(key)) == 0  # the third locks
    assert 9 <= _request(app, lambda: lockout.check([key])) <= 11
    _request(app, right_guess)  # another request's lockout in force stays
    assert 9 <= _request(app, lambda: lockout.check([key])) <= 11
    fresh = f"factor:user:{uuid.uuid4().hex}"

    def nothing_counted():  # nothing to take back, no counter below zero
        lockout.release(fresh)

    _request(app, nothing_counted)
    for _ in range(2):
        assert _request(app, lambda: lockout.reserve(fresh)) == 0
    assert _request(app, lambda: lockout.check([fresh])) == 0


def test_a_right_guess_that_reached_the_threshold_locks_nobody_out(app):
    """The guess reserved at the threshold starts the lockout before it is checked; when it
    proves right (released), that lockout goes with its count: the next guess is admitted.
    (An admin's add-user that succeeds after refusals; a device code typed right.)"""
    from idp import lockout

    key = f"factor:user:{uuid.uuid4().hex}"
    for _ in range(2):
        assert _request(app, lambda: lockout.reserve(key)) == 0

    def third_guess_right():
        assert lockout.reserve(key) == 0 and lockout.check([key]) > 0  # it reached the threshold
        lockout.release(key)

    _request(app, third_guess_right)
    assert _request(app, lambda: lockout.check([key])) == 0
    assert _request(app, lambda: lockout.reserve(key)) == 0  # a wrong one now: the third failure locks
    assert 9 <= _request(app, lambda: lockout.check([key])) <= 11


def test_guesses_reserved_at_once_are_admitted_up_to_the_limit(app):
    """20 guesses at the same moment, at a limit of 3: three are checked, whatever the timing."""
    import threading

    from idp import lockout
    from idp.db import db

    key, admitted, errors = f"factor:user:{uuid.uuid4().hex}", [], []
    barrier = threading.Barrier(20)

    def guess():
        with app.app_context():
            try:
                barrier.wait()
                if lockout.reserve(key) == 0:
                    admitted.append(1)
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(admitted) == 3


def test_a_password_guess_is_admitted_while_neither_its_address_nor_its_account_is_locked(app):
    """`PasswordGuess.admit`: the address's check and the account's reservation (one statement on
    the database). A locked address refuses the guess without counting it against the account,
    with the address's wait; a locked account refuses it too."""
    from idp import lockout
    from idp.db import db

    with app.app_context():
        settings = app.extensions["idp.settings"]
        threshold = int(settings.get("ratelimit.password_failures_before_lockout", 5))
        address_threshold = int(settings.get("ratelimit.password_ip_failures_before_lockout", 5))
        guess = _password_guess()
        assert guess.admit() == 0
        db.session.commit()
        guess.succeeded()  # a right password: its reservation taken back
        db.session.commit()
        for _ in range(address_threshold):  # guesses at other accounts from the same address
            lockout.fail([guess.address])
        wait = lockout.check([guess.address])
        assert wait > 0
        for _ in range(threshold + 1):  # refused, and not counted against the account
            assert 0 < guess.admit() <= wait
            db.session.commit()
        lockout.succeed([guess.address])
        db.session.commit()
        for _ in range(threshold):  # the account's whole budget is left
            assert guess.admit() == 0
            db.session.commit()
        assert guess.admit() > 0  # and now its lockout refuses the guess
        db.session.commit()


def test_guesses_from_one_address_count_against_it_when_admitted_and_a_right_one_takes_back_its_own(app):
    """Guesses at many accounts from one address (password spraying): each is counted against the
    address when admitted, before it is checked, so guesses in flight together cannot all pass
    the address's limit; a right password takes back its own count and no other guess's."""
    from idp import lockout
    from idp.db import db

    def guess_from(remote: str):
        return lockout.PasswordGuess.of(f"{uuid.uuid4().hex}@example.com", remote)

    with app.app_context():
        threshold = int(app.extensions["idp.settings"].get("ratelimit.password_ip_failures_before_lockout", 5))
        remote = _fresh_address()
        for _ in range(threshold - 1):  # admitted, not yet answered: in flight
            assert guess_from(remote).admit() == 0
            db.session.commit()
        right = guess_from(remote)
        assert right.admit() == 0  # the last one the address admits: its count locks the address...
        db.session.commit()
        assert guess_from(remote).admit() > 0
        db.session.commit()
        right.succeeded()  # ...until it proves right: its own count, and the lockout it started, go
        db.session.commit()
        last = guess_from(remote)
        assert last.admit() == 0  # the address's count is back at threshold - 1: this one reaches it
        db.session.commit()
        assert last.failed() > 0
        assert guess_from(remote).admit() > 0


@pytest.fixture
def password_app(migrated_database_url):
    """Password lockouts on the database, short enough to walk through: the second failure locks
    for 10 s, then 20, then 25 (the longest) for every later one."""
    from idp.app import create_app

    return create_app({"server.database_url": migrated_database_url,
                       "ratelimit.password_failures_before_lockout": 2, "ratelimit.password_lockout_seconds": 10,
                       "ratelimit.password_lockout_max_seconds": 25})


def _password_guess():
    """A guess at a fresh account from a fresh address (no counts left by other tests)."""
    from idp import lockout

    return lockout.PasswordGuess.of(f"{uuid.uuid4().hex}@example.com", _fresh_address())


def _fresh_address() -> str:
    number = uuid.uuid4().int
    return f"10.{number % 250}.{number // 250 % 250}.{number // 62500 % 250 + 1}"


def _counter(app, key: str):
    """The key's counter row as another request reads it (its own session)."""
    from idp.db import db
    from idp.models import FailureCounter

    with app.app_context():
        row = db.session.get(FailureCounter, key)
        result = None if row is None else (row.failures, row.locked_until)
        db.session.rollback()
        return result


def _lift_lockout(app, key: str) -> None:
    """The key's lockout over, as if its time had passed (its count stays)."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import FailureCounter

    with app.app_context():
        db.session.execute(update(FailureCounter).where(FailureCounter.key == key)
                           .values(locked_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()


def test_each_admitted_password_guess_past_the_threshold_locks_for_twice_as_long_up_to_the_longest(password_app):
    """The lockout is set by the statement that counts the guess (no second statement, no other
    guess in between), from the count it reached: 10 s at the threshold, then 20, then the
    longest (25) for every later guess admitted once the lockout is over."""
    from idp import lockout

    guess = _password_guess()
    assert _request(password_app, guess.admit) == 0
    assert _counter(password_app, guess.account)[1] is None  # one failure: below the threshold
    for expected in (10, 20, 25, 25):
        assert _request(password_app, guess.admit) == 0  # admitted, and its count locks
        assert expected - 1 <= _request(password_app, lambda: lockout.check([guess.account])) <= expected + 1
        assert 0 < _request(password_app, guess.admit) <= expected + 1  # refused meanwhile, not counted
        _lift_lockout(password_app, guess.account)
    assert _counter(password_app, guess.account)[0] == 5


def test_a_threshold_of_one_locks_at_the_first_admitted_guess(migrated_database_url):
    from idp import lockout
    from idp.app import create_app

    app = create_app({"server.database_url": migrated_database_url, "ratelimit.password_failures_before_lockout": 1,
                      "ratelimit.password_lockout_seconds": 10})
    guess = _password_guess()
    assert _request(app, guess.admit) == 0
    assert 9 <= _request(app, lambda: lockout.check([guess.account])) <= 11


def test_a_guess_admitted_outside_a_transaction_is_committed_before_the_hash(password_app):
    """The login form admits before its request has begun a transaction: the count is committed
    at once (other requests see it), and no transaction is left open through the hash. Inside a
    transaction (pages that read first), it waits for the caller's commit."""
    from sqlalchemy import select

    from idp.db import db
    from idp.models import User

    guess = _password_guess()
    with password_app.app_context():
        assert not db.in_transaction()
        assert guess.admit() == 0
        assert not db.in_transaction()
        assert _counter(password_app, guess.account)[0] == 1
    other = _password_guess()
    with password_app.app_context():
        db.session.scalars(select(User).limit(1)).first()  # a read first: the session's transaction
        assert other.admit() == 0
        assert db.in_transaction()
        db.session.commit()
    assert _counter(password_app, other.account)[0] == 1
