"""The credential store: sealing with associated data, the exactly-once gates, second_factor_count."""
import hashlib
import threading

import pytest
from sqlalchemy import update

from idp.db import db
from idp.factors import FactorKind, SecretUnavailable
from idp.factors.registry import current_registry
from idp.factors.store import (CredentialConflict, CredentialStore, gates_commit_with_step, recount_second_factors,
                               reseal_all)
from idp.factors.testing import make_user, second_factor_count
from idp.models import Credential
from idp.security.secrets import KeyRing

KINDS = {"otpish": FactorKind.SECOND_FACTOR, "codes": FactorKind.RECOVERY}


@pytest.fixture
def store(factor_app):
    return CredentialStore("otpish", KINDS.get)


@pytest.fixture
def codes(factor_app):
    return CredentialStore("codes", KINDS.get)


def test_create_seals_and_reveals(store, factor_user):
    info = store.create(factor_user, label="Phone", public={"digits": 6}, secret=b"seed")
    db.session.commit()
    assert info.factor == "otpish" and info.label == "Phone" and info.public == {"digits": 6}
    row = db.session.get(Credential, info.id)
    assert row.secret_ciphertext and b"seed" not in row.secret_ciphertext
    assert store.reveal(info) == b"seed"


def test_reveal_all_returns_live_secrets_in_one_query(store, factor_user):
    a = store.create(factor_user, secret=b"one")
    b = store.create(factor_user, secret=b"two")
    store.create(factor_user)  # no secret
    store.revoke(factor_user, a.id)
    db.session.commit()
    assert [(info.id, secret) for info, secret in store.reveal_all(factor_user)] == [(b.id, b"two")]


def test_ciphertext_moved_to_another_row_does_not_open(store, factor_user):
    bob = make_user("bob@example.com")
    a = store.create(factor_user, secret=b"alice-seed")
    b = store.create(bob, secret=b"bob-seed")
    db.session.commit()
    row_a = db.session.get(Credential, a.id)
    db.session.execute(update(Credential).where(Credential.id == b.id).values(
        secret_ciphertext=row_a.secret_ciphertext, secret_key_id=row_a.secret_key_id))
    db.session.commit()
    with pytest.raises(SecretUnavailable):
        store.reveal(b.id)
    # Another factor's store cannot open it either (the factor is in the associated data).
    db.session.execute(update(Credential).where(Credential.id == a.id).values(factor="codes"))
    db.session.commit()
    with pytest.raises(SecretUnavailable):
        CredentialStore("codes", KINDS.get).reveal(a.id)


def test_advance_counter_moves_forward_only(store, factor_user):
    info = store.create(factor_user, secret=b"s")
    db.session.commit()
    assert store.advance_counter(info.id, 100)
    assert not store.advance_counter(info.id, 100)  # replay
    assert not store.advance_counter(info.id, 99)   # regression
    assert store.advance_counter(info.id, 101)
    assert store.get(factor_user, info.id).counter == 101
    assert store.get(factor_user, info.id).last_used_at is not None


def test_consume_once(codes, factor_user):
    [info] = codes.replace_set(factor_user, [{"label": "code", "lookup_key": "h1"}])
    db.session.commit()
    assert codes.consume(info.id)
    assert not codes.consume(info.id)
    assert codes.count(factor_user, unused=True) == 0


def test_revoked_credential_neither_advances_nor_consumes(store, factor_user):
    info = store.create(factor_user, secret=b"s", lookup_key="k")
    db.session.commit()
    assert store.revoke(factor_user, info.id) is not None
    db.session.commit()
    assert not store.advance_counter(info.id, 5)
    assert not store.consume(info.id)
    assert store.get(factor_user, info.id) is None
    assert store.find("k") is None
    with pytest.raises(SecretUnavailable):
        store.reveal(info.id)  # the secret is dropped on revocation
    # The lookup key is free again (the same security key may be registered anew).
    store.create(factor_user, lookup_key="k")


def test_second_factor_count_is_maintained(store, codes, factor_user):
    a = store.create(factor_user, secret=b"1")
    store.create(factor_user, secret=b"2")
    codes.replace_set(factor_user, [{"lookup_key": f"h{i}"} for i in range(10)])
    db.session.commit()
    assert second_factor_count(factor_user) == 2  # recovery codes do not count
    assert store.revoke(factor_user, a.id) is not None
    assert store.revoke(factor_user, a.id) is None  # twice changes nothing
    db.session.commit()
    assert second_factor_count(factor_user) == 1
    db.session.rollback()


def test_count_rolls_back_with_the_transaction(store, factor_user):
    store.create(factor_user, secret=b"1")
    db.session.rollback()
    assert second_factor_count(factor_user) == 0
    assert store.count(factor_user) == 0


def test_recount_repairs(store, factor_user):
    store.create(factor_user, secret=b"1")
    db.session.commit()
    from idp.models import User
    db.session.execute(update(User).values(second_factor_count=7))
    db.session.commit()
    recount_second_factors(["otpish"])
    assert second_factor_count(factor_user) == 1


def test_registry_store_counts_registered_second_factors(factor_app, factor_user):
    factors = {f.name: f for f in current_registry().all()}
    if "totp" not in factors:
        pytest.skip("totp plugin not installed")
    factors["totp"].store.create(factor_user, secret=b"x" * 20)
    db.session.commit()
    assert second_factor_count(factor_user) == 1
    if "recovery_codes" in factors:
        factors["recovery_codes"].store.replace_set(factor_user, [{"lookup_key": "a"}, {"lookup_key": "b"}])
        db.session.commit()
        assert second_factor_count(factor_user) == 1


def test_duplicate_lookup_key_conflicts_and_session_survives(store, factor_user):
    store.create(factor_user, lookup_key="cred-1")
    db.session.commit()
    with pytest.raises(CredentialConflict):
        store.create(factor_user, lookup_key="cred-1")
    store.create(factor_user, lookup_key="cred-2")
    db.session.commit()
    assert [c.lookup_key for c in store.list(factor_user)] == ["cred-1", "cred-2"]
    assert second_factor_count(factor_user) == 2


def test_replace_set_invalidates_old_set(codes, factor_user):
    old = codes.replace_set(factor_user, [{"lookup_key": "old1"}, {"lookup_key": "old2"}])
    db.session.commit()
    new = codes.replace_set(factor_user, [{"lookup_key": "new1"}])
    db.session.commit()
    assert codes.find("old1") is None and codes.find("new1").id == new[0].id
    assert not codes.consume(old[0].id)


def test_list_get_rename_scope_to_user_and_factor(store, codes, factor_user):
    bob = make_user("bob@example.com")
    mine = store.create(factor_user, label="Mine")
    store.create(bob, label="Bob's")
    codes.replace_set(factor_user, [{"lookup_key": "c"}])
    db.session.commit()
    assert [c.label for c in store.list(factor_user)] == ["Mine"]
    assert len(CredentialStore(None, KINDS.get).list(factor_user)) == 2
    assert store.get(bob, mine.id) is None
    assert not store.rename(bob, mine.id, "stolen")
    assert store.rename(factor_user, mine.id, "  Work phone ")
    db.session.commit()
    assert store.get(factor_user, mine.id).label == "Work phone"


def test_a_request_reads_the_users_credentials_once_and_sees_its_own_writes(factor_app, store, codes, factor_user,
                                                                          monkeypatch):
    """Within a request, lists, held factors and secret checks share one read of the user's live
    credentials (the login asks all three); every write through the store makes the next read fresh."""
    first = store.create(factor_user, label="Phone", secret=b"one")
    db.session.commit()
    reads = []
    real_read_all = db.read_all
    monkeypatch.setattr(db, "read_all", lambda statement, values: reads.append(statement) or real_read_all(statement, values))
    with factor_app.test_request_context("/"):
        assert [c.label for c in store.list(factor_user)] == ["Phone"]
        assert store.factors_held(factor_user) == {"otpish"}
        assert [(c.id, secret) for c, secret in store.reveal_all(factor_user)] == [(first.id, b"one")]
        assert codes.list(factor_user) == []
        assert len(reads) == 1
        assert store.advance_counter(first.id, 7)
        assert [c.counter for c, _secret in store.reveal_all(factor_user)] == [7]
        codes.create(factor_user, lookup_key="k")
        assert store.factors_held(factor_user) == {"otpish", "codes"}
        assert store.rename(factor_user, first.id, "Work")
        assert [c.label for c in store.list(factor_user)] == ["Work"]
        store.revoke(factor_user, first.id)
        assert store.list(factor_user) == [] and store.reveal_all(factor_user) == []
        db.session.commit()
    with factor_app.test_request_context("/"):  # a new request reads again
        assert [c.factor for c in CredentialStore(None, KINDS.get).list(factor_user)] == ["codes"]


def test_gates_commit_with_the_login_step_when_it_asks(factor_app, store, factor_user):
    """In a login step (`gates_commit_with_step`) a gate's spending commits with the step's outcome:
    a step that fails after the check rolls it back; outside, a gate commits at once."""
    first = store.create(factor_user, secret=b"one")
    db.session.commit()
    with factor_app.test_request_context("/"):
        with gates_commit_with_step():
            assert store.advance_counter(first.id, 5)
        db.session.rollback()  # the step failed: nothing was spent
        assert store.get(factor_user, first.id).counter == 0
        with gates_commit_with_step():
            assert store.advance_counter(first.id, 5)
            assert not store.advance_counter(first.id, 5)  # still once within the step
        db.session.commit()  # the step's outcome, with what the check spent
        assert store.advance_counter(first.id, 6)  # outside the block: committed at once
        db.session.rollback()
        assert store.get(factor_user, first.id).counter == 6


def test_reseal_all_moves_rows_to_the_current_key(factor_app, store, factor_user):
    info = store.create(factor_user, secret=b"old-key-secret")
    db.session.commit()
    dev_key = hashlib.sha256(b"idp-dev-encryption|" + factor_app.config["SECRET_KEY"].encode()).digest()
    new_ring = KeyRing([("k2", b"\x01" * 32), ("dev", dev_key)])
    factor_app.extensions["idp.keyring"] = new_ring
    assert store.reveal(info) == b"old-key-secret"  # still opens with the old key in the ring
    assert reseal_all() == 1
    assert db.session.get(Credential, info.id).secret_key_id == "k2"
    assert reseal_all() == 0
    factor_app.extensions["idp.keyring"] = KeyRing([("k2", b"\x01" * 32)])  # old key retired
    assert store.reveal(info) == b"old-key-secret"


def test_reseal_names_a_row_that_does_not_open(factor_app, store, factor_user):
    store.create(factor_user, secret=b"s")
    db.session.commit()
    factor_app.extensions["idp.keyring"] = KeyRing([("k2", b"\x01" * 32), ("dev", b"\x02" * 32)])
    with pytest.raises(SecretUnavailable, match="credential"):
        reseal_all()


# --- concurrency on PostgreSQL ---------------------------------------------------------------


def _race(app, fn, n=10):
    barrier = threading.Barrier(n)
    results = []

    def worker():
        with app.app_context():
            barrier.wait()
            try:
                results.append(fn())
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.postgres
def test_ten_threads_advance_the_same_step_once(pg_app):
    user = make_user("race@example.com")
    store = CredentialStore("otpish", KINDS.get)
    info = store.create(user, secret=b"s")
    db.session.commit()
    results = _race(pg_app, lambda: store.advance_counter(info.id, 58000000))
    assert sorted(results) == [False] * 9 + [True]


@pytest.mark.postgres
def test_ten_threads_consume_the_same_code_once(pg_app):
    user = make_user("race@example.com")
    store = CredentialStore("codes", KINDS.get)
    [info] = store.replace_set(user, [{"lookup_key": "code"}])
    db.session.commit()
    results = _race(pg_app, lambda: store.consume(info.id))
    assert sorted(results) == [False] * 9 + [True]


@pytest.mark.postgres
def test_concurrent_creates_keep_the_count(pg_app):
    user = make_user("race@example.com")
    store = CredentialStore("otpish", KINDS.get)

    def create():
        store.create(user, secret=b"s")
        db.session.commit()
        return True

    _race(pg_app, create)
    db.session.expire_all()
    assert second_factor_count(user) == 10


@pytest.mark.parametrize("lock", ["lock_user", "hold_enabled"])
def test_a_check_under_the_users_lock_sees_what_another_connection_committed(factor_app, store, factor_user, lock):
    """The request's copy of the user's credentials is forgotten when the user's row is locked,
    through either door a plugin has to that lock (`hold_enabled` is "`lock_user`, and whether the
    user is still enabled"): a credential another request committed while this one waited is seen
    by what is asked under the lock. `hold_enabled` kept the copy read before it."""
    from datetime import datetime

    from sqlalchemy import create_engine, insert

    from idp.factors import directory

    with factor_app.test_request_context("/"):
        assert store.list(factor_user) == []  # read, and kept for the request
        elsewhere = create_engine(str(db.engine.url.render_as_string(hide_password=False)))
        try:
            with elsewhere.begin() as connection:  # another request's enrolment, committed meanwhile
                connection.execute(insert(Credential.__table__).values(
                    user_id=factor_user.id, factor="otpish", label="Elsewhere", public_json={}, counter=0,
                    created_at=datetime(2026, 12, 1)))
        finally:
            elsewhere.dispose()
        getattr(directory, lock)(factor_user.id if lock == "lock_user" else factor_user)
        assert [c.label for c in store.list(factor_user)] == ["Elsewhere"]
        db.session.rollback()
