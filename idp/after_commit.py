"""Work for after the commit: `after_commit(callback)` calls `callback()` once the request's
transaction has committed and ended, and never if it rolls back.

For what talks to the outside (a mail relay, an SMS gateway) about what the transaction
writes: a factor's code e-mailed from `begin_challenge` (idp.factors.directory exposes it to
plugins). Sent from inside the transaction, the mail kept it open for the relay's whole answer
(SmtpNotifier: up to its timeout, 10 s), and on SQLite every transaction holds the database's
write lock (idp.db): every other request of every worker waited for it, and past 30 s failed
with "database is locked". Sent before the commit, the user could type a code not stored yet;
sent for a transaction rolled back, it named a code that never was.

- `callback()` runs once the session's current transaction commits (one is begun when none is
  open: what the caller writes next commits with it), after that transaction ended: no
  transaction is open and its connection is back in the pool, so nothing is held while the
  callback waits for the outside. It runs in the caller's context (the request's, its language).
- It is dropped when that transaction rolls back, or the savepoint it was registered in (or
  one around it) rolls back while the transaction goes on to commit the rest (as idp.audit
  drops the events of a savepoint rolled back), or when the session ends without a commit.
- What it raises is logged, never passed on: the commit stands, and so does the request's
  answer. A transaction it begins (reading through the session) is rolled back when it
  returns: it writes nothing, and should read what it needs before it is registered (a
  transaction begun on SQLite takes the write lock).

Requests that register nothing pay nothing: the listeners are added to the session itself,
with its first callback (a session lives for one request: idp.db), not to every session.
"""
from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import event

from idp.db import db

log = logging.getLogger(__name__)
_PENDING = "idp.after_commit"  # session.info: [(transaction it was registered in, callback)], in order
_READY = "idp.after_commit_ready"  # session.info: the callbacks of the transaction just committed


def after_commit(callback: Callable[[], object]) -> None:
    """Call `callback()` after the session's current transaction commits (see the module)."""
    session = db.session()
    _listen(session)
    registered_in = session.get_nested_transaction() or session.get_transaction() or session.begin()
    session.info.setdefault(_PENDING, []).append((registered_in, callback))


def _listen(session) -> None:
    if not event.contains(session, "after_transaction_end", _ended):
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_soft_rollback", _rolled_back)
        event.listen(session, "after_transaction_end", _ended)


def _committed(session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the transaction around it may still roll back
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.info[_READY] = [callback for _transaction, callback in pending]


def _rolled_back(session, previous_transaction) -> None:
    """A savepoint rolled back (the transaction goes on): what was registered in it is dropped,
    in a savepoint inside it too. (The outermost transaction's rollback was seen by `_ended`.)"""
    pending = session.info.get(_PENDING)
    if pending:
        pending[:] = [(transaction, callback) for transaction, callback in pending
                      if not _inside(transaction, previous_transaction)]


def _inside(transaction, outer) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _ended(session, transaction) -> None:
    if transaction.parent is not None:
        return
    session.info.pop(_PENDING, None)  # not committed (a commit took them already)
    ready = session.info.pop(_READY, None)
    if ready:
        _run(session, ready)


def _run(session, callbacks: list) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the transaction is committed: a callback's failure must not turn it into a 500
            log.exception("a callback after the commit failed: %s", getattr(callback, "__qualname__", callback))
        finally:
            if session.in_transaction():  # (it read through the session: nothing of it is kept)
                session.rollback()
