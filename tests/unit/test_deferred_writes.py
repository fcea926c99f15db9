"""idp.deferred_writes: on PostgreSQL a session transaction's inserts (`db.run_insert`,
`db.run_insert_many`) go with its next statement; whatever comes next sees them as if they had
been sent at once. On SQLite they are sent at once, and the same tests hold."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import bindparam, create_engine, exc, select, text, update

from idp.db import DeferredWriteFailed, utcnow
from idp.models import AuditEvent, Organization, Token, User

_TOKENS = Token.__table__
_EVENTS = AuditEvent.__table__
_HASHES = select(_TOKENS.c.access_token_hash).where(_TOKENS.c.client_id == bindparam("client")).order_by(
    _TOKENS.c.access_token_hash)
_RENAME = update(_TOKENS).where(_TOKENS.c.client_id == bindparam("client")).values(client_id=bindparam("to"))
_EVENT_NAMED = update(_EVENTS).where(_EVENTS.c.event == bindparam("name")).values(actor=bindparam("actor")).returning(
    _EVENTS.c.id)


def _token(n: int, client: str = "svc") -> dict:
    return {"access_token_hash": f"{n:064x}", "client_id": client, "scope": "", "issued_at": 1, "access_expires_at": 2}


def _event(name: str) -> dict:
    return {"at": utcnow(), "org_id": None, "event": name, "actor_id": None, "actor": "", "subject_id": None, "ip": None,
            "user_agent": None, "details": {}}


@pytest.fixture
def database(bare_database):
    return bare_database


@pytest.fixture
def sent(database, monkeypatch):
    """The statements psycopg sends (on SQLite: none are counted, the tests that count skip)."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs every statement at once: nothing is deferred")
    statements: list[str] = []
    execute = psycopg.Cursor.execute

    def counted(cursor, query, *args, **kwargs):
        statements.append(str(query))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    return statements


def _committed_hashes(database, client: str = "svc") -> list[str]:
    """What another connection sees once the transaction is over."""
    engine = create_engine(database.engine.url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(_HASHES, {"client": client}).scalars())
    finally:
        engine.dispose()


def test_a_read_of_the_transaction_sees_its_inserts(database):
    database.run_insert(_TOKENS, _token(1))
    database.run_insert_many(_TOKENS, [_token(2), _token(3)])
    assert len(database.run(_HASHES, {"client": "svc"}).all()) == 3
    database.run_insert(_TOKENS, _token(4))
    assert len(database.session.execute(_HASHES, {"client": "svc"}).all()) == 4  # through SQLAlchemy too


def test_a_write_of_another_table_carries_them_in_one_statement(database, sent):
    """A login's code INSERT carries its session and events: one round trip for three writes.
    The carrier's own result (its RETURNING rows, its rowcount) is what the caller reads."""
    database.run(text("SELECT 1"))  # (the transaction's first statements are not counted)
    database.run_insert(_EVENTS, _event("first"))
    database.session.execute(text("SELECT 1"))  # sends them: a read is not a carrier
    sent.clear()
    database.run_insert(_TOKENS, _token(1))
    database.run_insert_many(_TOKENS, [_token(2), _token(3)])  # (the same parameter names, renamed apart)
    assert sent == []
    returned = database.run(_EVENT_NAMED, {"name": "first", "actor": "someone"})
    assert len(sent) == 1 and sent[0].startswith("WITH _w0 AS (INSERT INTO tokens")
    assert len(returned.all()) == 1 and returned.rowcount == 1
    database.session.commit()
    assert _committed_hashes(database) == [f"{n:064x}" for n in (1, 2, 3)]


def test_a_write_of_their_table_sends_them_first_and_sees_them(database, sent):
    database.run_insert_many(_TOKENS, [_token(1), _token(2)])
    sent.clear()
    assert database.run(_RENAME, {"client": "svc", "to": "web"}).rowcount == 2
    assert len(sent) == 2 and sent[0].startswith("INSERT INTO tokens") and sent[1].startswith("UPDATE tokens")


def test_the_commit_sends_them_and_a_rollback_drops_them(database):
    database.run_insert(_TOKENS, _token(1))
    database.session.rollback()
    database.run_insert(_TOKENS, _token(2))
    database.session.commit()
    assert _committed_hashes(database) == [f"{2:064x}"]


def test_a_savepoint_comes_after_them_and_its_rollback_keeps_them(database):
    """Inserted before a savepoint: kept when it rolls back (a factor's failed clean-up hook:
    idp.factors.registry); inserted inside it, undone with it."""
    database.run_insert(_TOKENS, _token(1))
    with pytest.raises(exc.IntegrityError):
        with database.session.begin_nested():
            database.run_insert(_TOKENS, _token(2))
            database.session.add(Token(**_token(2)))  # the same hash again
            database.session.flush()
    database.session.commit()
    assert _committed_hashes(database) == [f"{1:064x}"]


def test_rows_inserted_together_may_refer_to_one_another(database):
    """PostgreSQL checks foreign keys at the end of the statement they all go in."""
    organizations, users = Organization.__table__, User.__table__
    database.run_insert(organizations, {"id": 41, "name": "Deferred", "require_2fa": False,
                                        "self_push_recovery": True})
    database.run_insert(users, {"id": 42, "org_id": 41, "public_id": "p42", "email": "d@example.test",
                                "email_verified": True, "name": "", "role": "user", "disabled": False,
                                "mfa_setting": "follow", "second_factor_count": 0, "logins_since_required": 0})
    database.session.commit()
    assert database.session.scalar(select(User.org_id).where(User.id == 42)) == 41


def test_a_deferred_insert_that_fails_is_not_taken_for_the_next_statements_failure(database, sent):
    """A savepoint's flush that expects its own IntegrityError (a taken e-mail address, a
    credential's key) must not take a failed insert of earlier for it."""
    database.run_insert(_TOKENS, _token(1))
    database.session.commit()
    database.run_insert(_TOKENS, _token(1))  # a unique violation, not sent yet
    with pytest.raises(DeferredWriteFailed) as raised:
        with database.session.begin_nested():
            database.session.add(Token(**_token(2)))
            database.session.flush()
    assert isinstance(raised.value.__cause__, psycopg.errors.UniqueViolation)


def test_an_update_or_delete_left_for_later_goes_with_the_next_write(database, sent):
    """`write_later`: a login's clearing of its failure counters rides with its next write."""
    database.run_insert_many(_TOKENS, [_token(1), _token(2)])
    database.run_insert(_EVENTS, _event("kept"))
    database.session.execute(text("SELECT 1"))  # sends them
    sent.clear()
    database.write_later(_RENAME, {"client": "svc", "to": "web"})
    assert sent == []
    assert database.run(_EVENT_NAMED, {"name": "kept", "actor": "x"}).rowcount == 1
    assert len(sent) == 1 and sent[0].startswith("WITH _w0 AS (UPDATE tokens")
    database.session.commit()
    assert _committed_hashes(database, "web") == [f"{1:064x}", f"{2:064x}"]


def test_an_update_that_reads_what_a_deferred_write_changed_sees_it(database, sent):
    """Deferred writes go in one statement, where none would see another's rows: an UPDATE of
    the table a deferred INSERT fills is run at once, after them."""
    database.run(text("SELECT 1"))
    sent.clear()
    database.run_insert(_TOKENS, _token(1))
    database.write_later(_RENAME, {"client": "svc", "to": "web"})
    assert len(sent) == 2 and sent[0].startswith("INSERT INTO tokens") and sent[1].startswith("UPDATE tokens")
    database.run_insert(_TOKENS, _token(2))  # an INSERT after the UPDATE: deferred again
    database.session.commit()
    assert _committed_hashes(database, "web") == [f"{1:064x}"]
    assert _committed_hashes(database, "svc") == [f"{2:064x}"]
