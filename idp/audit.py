"""The audit log: `record(event, ...)` writes one AuditEvent in the caller's transaction.

Call it in the same database transaction as the change it describes, so that a
change never lands without its event (nor an event without its change).

Who and about whom: `actor_id`/`actor` name who acted (a signed-in user or admin by id and
e-mail, `cli` for the `idp` command, a client id for a client's call, `ANONYMOUS` for a
requester nobody has authenticated, such as whoever typed a password); `subject_id` the user
the event is about, always with that user's organization as `org_id`: a user's events are read
in their organization (idp.models.audit's indexes). An event of no organization names no user
(`client.*` events name their client by its row id). The request's address and User-Agent are
taken from the request itself.

Once its transaction commits, each event is also written as a log line (logger `idp.audit`,
the event's name as the message, its columns as fields), for the log pipeline and a SIEM to pick
up beside the access lines (`ops.audit_log = false` turns them off), and handed to whatever
else listens for committed events (`on_commit`: idp.security_notices mails the user about
some). An event rolled back with its change reaches neither, a savepoint's rollback included.
The events wait on the session (`session.info`) until the commit.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from sqlalchemy import event as orm_event

from idp.db import db, utcnow
from idp.models import AuditEvent
from idp.user_agent import for_storage as user_agent_for_storage

_EVENTS = AuditEvent.__table__
log = logging.getLogger("idp.audit")
_PENDING = "idp.audit_pending"  # session.info: the events written in the transaction, not yet committed
_SAVEPOINTS = "idp.audit_savepoints"  # session.info: each savepoint -> how many events were pending at its start
_LISTENERS: list[Callable[[list[dict[str, Any]]], None]] = []
# The actor of an unauthenticated request (a wrong password, a refused recovery attempt): only
# its address and User-Agent say who it was; the account it named is the subject.
ANONYMOUS = "anonymous"


def _request_facts() -> tuple[str | None, str | None]:
    from flask import has_request_context, request

    if not has_request_context():
        return None, None
    # Whatever the client sent, as sessions keep it (idp.user_agent): one line of text of bounded
    # length, no NUL (which PostgreSQL's text refuses: every audited request would fail).
    return request.remote_addr, user_agent_for_storage(request.headers.get("User-Agent"))


def request_facts() -> tuple[str | None, str | None]:
    """(address, User-Agent) of the request being served, as events record them: for work that a
    thread does on the request's behalf after its answer (`record(..., facts=...)`)."""
    return _request_facts()


def record(event: str, *, org_id: int | None, actor_id: int | None = None, actor: str = "",
           subject_id: int | None = None, details: dict[str, Any] | None = None,
           facts: tuple[str | None, str | None] | None = None) -> AuditEvent:
    ip, user_agent = facts or _request_facts()
    row = AuditEvent(event=event, org_id=org_id, actor_id=actor_id, actor=actor, subject_id=subject_id,
                     ip=ip, user_agent=user_agent, details=details or {})
    db.session.add(row)
    # The row itself, not a copy: a caller may still amend its details before the commit.
    db.session.info.setdefault(_PENDING, []).append(row)
    return row


def record_about_user(event: str, user_id: int | None, *, actor_id: int | None = None, actor: str = "",
                      details: dict[str, Any] | None = None) -> None:
    """`record` about a user known only by id (a token's, a session's): in their organization,
    which one read finds. A token without a user (client_credentials) is recorded without one."""
    from sqlalchemy import select

    from idp.models import User

    org_id = db.session.scalar(select(User.org_id).where(User.id == user_id)) if user_id is not None else None
    record(event, org_id=org_id, actor_id=actor_id, actor=actor, subject_id=user_id, details=details)


def record_now(event: str, *, org_id: int | None, actor_id: int | None = None, actor: str = "",
               subject_id: int | None = None, details: dict[str, Any] | None = None) -> None:
    """`record` as one Core INSERT in the session's transaction (commits with it; on PostgreSQL sent
    with the transaction's next statement: idp.deferred_writes).

    For the login pipeline's hot path: no ORM object, no flush. Only for events whose org and
    subject are already in the database (a Core INSERT goes before the ORM's flush of pending
    objects), and whose details are final (there is no row to amend afterwards).
    """
    record_all_now([dict(event=event, org_id=org_id, actor_id=actor_id, actor=actor, subject_id=subject_id,
                         details=details)])


def record_all_now(events: list[dict]) -> None:
    """`record_now` for several events (each given as its keyword arguments), as one statement."""
    if not events:
        return
    ip, user_agent = _request_facts()
    at = utcnow()
    rows = [{"at": at, "org_id": e["org_id"], "event": e["event"], "actor_id": e.get("actor_id"),
             "actor": e.get("actor", ""), "subject_id": e.get("subject_id"), "ip": ip, "user_agent": user_agent,
             "details": e.get("details") or {}} for e in events]
    db.run_insert_many(_EVENTS, rows)
    db.session.info.setdefault(_PENDING, []).extend(rows)


def on_commit(listener: Callable[[list[dict[str, Any]]], None]) -> None:
    """Call `listener(events)` after each commit that wrote events, in the app context of the
    commit, with each event as a dict of `_FIELDS`. A listener must be quick (start a thread for
    anything slow) and should not raise: what it raises is logged, never passed to the commit."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


_FIELDS = ("event", "org_id", "actor_id", "actor", "subject_id", "ip", "user_agent", "details")


def _log_lines(events: list[dict[str, Any]]) -> None:
    if log.isEnabledFor(logging.INFO):
        for fields in events:
            log.info(fields["event"], extra={"fields": fields})


on_commit(_log_lines)


@orm_event.listens_for(db.session.session_factory, "after_commit")
def _committed(session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    events = [{name: entry[name] for name in _FIELDS} if isinstance(entry, dict)
              else {name: getattr(entry, name) for name in _FIELDS} for entry in pending]
    for listener in _LISTENERS:
        try:
            listener(events)
        except Exception:  # the change is committed: a listener's failure must not turn it into a 500
            log.exception("a listener of committed audit events failed: %s", getattr(listener, "__name__", listener))


@orm_event.listens_for(db.session.session_factory, "after_transaction_end")
def _forget_uncommitted(session, transaction) -> None:
    """The outermost transaction ended without a commit (rolled back, or closed with the session):
    its events were never written. (After a commit, `_committed` took them already.)"""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)


@orm_event.listens_for(db.session.session_factory, "after_transaction_create")
def _mark_savepoint(session, transaction) -> None:
    if transaction.nested:
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = len(session.info.get(_PENDING, ()))


@orm_event.listens_for(db.session.session_factory, "after_soft_rollback")
def _forget_savepoint_rolled_back(session, previous_transaction) -> None:
    """A savepoint rolled back took the events written since it began (a factor's failed clean-up
    hook, idp.factors.registry._cleanup_hook: its `recovery_qr.revoked` undone with the revocation),
    while the transaction goes on to commit the rest: those events must not reach the log lines
    and listeners either. (Savepoints nest, so they are the pending list's tail.)"""
    mark = session.info.get(_SAVEPOINTS, {}).pop(previous_transaction, None)
    pending = session.info.get(_PENDING)
    if mark is not None and pending:
        del pending[mark:]
