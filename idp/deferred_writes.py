"""PostgreSQL: a session transaction's writes that nobody reads, sent with its next statement.

A short statement's cost is mostly its round trip: the client's send, wait and wake-up, the
server's own per-statement work. Nobody reads the outcome of an INSERT (`db.run_insert`,
`db.run_insert_many`: a login's session row and audit events) or of some UPDATEs and DELETEs
(`db.write_later`: a login's stamp of the user, the clearing of its failure counters), so they
can wait for the next statement of their transaction and go with it:

- as data-modifying CTEs of that statement (`WITH _w0 AS (INSERT ...), _w1 AS (DELETE ...)
  <statement>`) when it writes (INSERT, UPDATE, DELETE) and touches none of their tables: every
  part of one statement sees the same snapshot, so it could not have seen them anyway, and its
  rowcount and RETURNING rows stay its own (a login's code INSERT carries its session and
  events: three round trips become one);
- on their own, as one statement, before any other statement (a read, or a write that touches
  their tables and must see them; the ORM's statements and a SAVEPOINT: idp.db's
  `before_cursor_execute` hook) and before the commit.

Deferred writes go together in one statement, where none sees another's effect: an UPDATE or
DELETE that reads a table an earlier deferred write changes is not deferred (idp.db sends those
first, then runs it), while an INSERT, which reads nothing, always may be. PostgreSQL checks
foreign keys at the end of the whole statement, so rows inserted together may refer to one
another in any order. A failing write fails the statement it goes with, which fails the
transaction as it would have.
"""
from __future__ import annotations

import re

# psycopg's named parameters, `%(name)s` (not a literal `%%(`).
_PARAMETER = re.compile(r"(?<!%)%\((\w+)\)s")
# (the deferred writes' SQL..., the carrying statement's SQL or None) -> the combined statement.
# Bounded by the code's shapes: a request's writes come in a few fixed sequences.
_COMBINED: dict[tuple, str] = {}


class DeferredWrites:
    """The writes of one session transaction not sent yet, in the order they were made."""

    __slots__ = ("sqls", "values", "tables")

    def __init__(self) -> None:
        self.sqls: list[str] = []
        self.values: list[dict] = []
        self.tables: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.sqls)

    def add(self, prepared, parameters: dict) -> None:
        """Defer `prepared` (an idp.lone.Prepared write) with its bound parameters."""
        self.sqls.append(prepared.sql)
        self.values.append(parameters)
        self.tables |= prepared.tables

    def touches(self, prepared) -> bool:
        """Whether `prepared` reads or writes a table they change."""
        return not self.tables.isdisjoint(prepared.tables)

    def can_ride_with(self, prepared) -> bool:
        """Whether they may go as CTEs of `prepared`: a write that touches none of their tables."""
        return (prepared.writes and not self.touches(prepared)
                and not prepared.sql.startswith("WITH RECURSIVE"))  # (no place for them among its CTEs)

    def carried_by(self, sql: str, parameters: dict) -> tuple[str, dict]:
        """The statement `sql` with them as its CTEs, and the parameters of it all (its own keep
        their names); they count as sent."""
        combined = _combined(self.sqls, sql)
        merged = self._renamed_values()
        merged.update(parameters)
        self._clear()
        return combined, merged

    def send(self, cursor) -> None:
        """Send them now, as one statement on `cursor`."""
        sql, values = _combined(self.sqls, None), self._renamed_values()
        self._clear()
        cursor.execute(sql, values)

    def _renamed_values(self) -> dict:
        return {f"_w{i}_{name}": value for i, values in enumerate(self.values) for name, value in values.items()}

    def _clear(self) -> None:
        self.sqls.clear()
        self.values.clear()
        self.tables.clear()


def _combined(sqls: list[str], carrier: str | None) -> str:
    """The writes `sqls` (their parameters renamed `_w<i>_<name>`) as CTEs of `carrier`, or of
    the last of them when there is none."""
    key = (*sqls, carrier)
    combined = _COMBINED.get(key)
    if combined is None:
        renamed = [_PARAMETER.sub(rf"%(_w{i}_\1)s", sql) for i, sql in enumerate(sqls)]
        if carrier is None:
            carrier = renamed.pop()
        ctes = ", ".join(f"_w{i} AS ({sql})" for i, sql in enumerate(renamed))
        if not ctes:
            combined = carrier
        elif carrier.startswith("WITH "):  # a statement with CTEs of its own
            combined = f"WITH {ctes}, {carrier[5:]}"
        else:
            combined = f"WITH {ctes} {carrier}"
        _COMBINED[key] = combined
    return combined
