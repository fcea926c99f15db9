"""idp.lone.Prepared.rows: a join that repeats one side's columns on every row (the login's row
beside each of the user's credentials) decodes a repeated value once, and gives the same rows."""
from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import sqlite

from idp.lone import REPEATS, Prepared

_TABLE = Table("t", MetaData(), Column("id", Integer), Column("doc", JSON), Column("at", DateTime),
               Column("label", String))
_AT = "2026-12-05 08:00:00.000000"
RAWS = [(1, '{"a": [1]}', _AT, "x"), (2, '{"a": [1]}', _AT, "y"), (3, '{"b": 2}', _AT, "z"), (4, '{"a": [1]}', _AT, "w")]


def _decodes(prepared: Prepared) -> list[str]:
    """The names of the columns whose values `prepared` decodes, one entry per decoding."""
    calls: list[str] = []

    def counted(reader, name):
        if reader is None:
            return None

        def read(value):
            calls.append(name)
            return reader(value)
        return read

    prepared.readers = tuple(counted(reader, name) for reader, name in zip(prepared.readers, prepared.names, strict=True))
    return calls


def test_a_statement_marked_repeating_decodes_a_value_that_repeats_the_row_befores_once():
    plain = Prepared(select(_TABLE), sqlite.dialect())
    marked = Prepared(select(_TABLE).execution_options(**{REPEATS: True}), sqlite.dialect())
    expected = plain.rows(RAWS)
    assert [tuple(row) for row in marked.rows(RAWS)] == [tuple(row) for row in expected]
    assert expected[0].doc == {"a": [1]} and expected[2].doc == {"b": 2} and expected[3].at.year == 2026
    decoded = _decodes(marked)
    marked.rows(RAWS)
    assert decoded.count("doc") == 3 and decoded.count("at") == 1  # (rows 1, 3 and 4; row 1 only)


def test_an_unmarked_statement_decodes_every_value():
    plain = Prepared(select(_TABLE), sqlite.dialect())
    decoded = _decodes(plain)
    plain.rows(RAWS)
    assert decoded.count("doc") == 4 and decoded.count("at") == 4


def test_the_logins_load_with_the_users_credentials_is_marked_repeating():
    from idp.login import transaction, user

    assert transaction._LOAD.get_execution_options()[REPEATS]
    assert user._BY_EMAIL_WITH_CREDENTIALS.get_execution_options()[REPEATS]


def test_json_read_as_text_is_decoded_by_the_statements_reader_on_postgresql_too():
    """psycopg decodes a json column itself, on every row, before any reader: `repeated_json`
    reads it as text, so that the statement's own reader decodes it, once per distinct value."""
    from sqlalchemy.dialects.postgresql import psycopg

    from idp.lone import repeated_json

    dialect = psycopg.dialect()
    assert Prepared(select(_TABLE), dialect).readers[1] is None  # (psycopg's own decoding, per row)
    marked = Prepared(select(*repeated_json(_TABLE.c)).execution_options(**{REPEATS: True}), dialect)
    assert "CAST(t.doc AS TEXT) AS doc" in marked.sql and marked.names == ("id", "doc", "at", "label")
    decoded = _decodes(marked)
    rows = marked.rows([(n, doc, None, label) for n, doc, _at, label in RAWS])
    assert [row.doc for row in rows] == [{"a": [1]}, {"a": [1]}, {"b": 2}, {"a": [1]}]
    assert decoded.count("doc") == 3
