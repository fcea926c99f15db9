"""The audit log for operators (`idp audit list`): every organization's events, and those of
none (the provider's own: clients, signing keys, refused passwords of unknown addresses), in a
time window, oldest first, as text or JSON.

Admins read their own organization's events on /admin/audit; the JSON log lines (logger
`idp.audit`) carry each event as it happens. This reads what the database kept, for an
investigation after the fact or an export to another system.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from idp.db import db
from idp.factors.cli import iso_utc
from idp.models import AuditEvent, Organization, User

@dataclass(frozen=True)
class Window:
    """Which events: [since, until), of one organization (None: every one, and none), about one
    user (`subject_id`, with `subject_org_id` their organization; None: anyone), whose name
    starts with `prefix` in any case ("": any; event names are lower case).

    An event's subject id names a user in the events of that user's organization, and a client
    in the provider's own (`client.*`, of no organization: the client's row id, which may be a
    user's id as well): a user's events are those of an organization."""

    since: datetime
    until: datetime | None = None
    org_id: int | None = None
    subject_id: int | None = None
    subject_org_id: int | None = None
    prefix: str = ""


def events(window: Window, limit: int) -> tuple[list[dict], bool]:
    """The window's events, oldest first, at most `limit`, as documents; and whether more were
    left out.

    Each with its organization's name and its subject's address, joined in the same statement:
    an IN list of the ids they name failed on PostgreSQL past 65,535 users (psycopg's limit on
    a statement's parameters), at a --limit well within its range."""
    query = (select(AuditEvent, Organization.name, User.email)
             .outerjoin(Organization, Organization.id == AuditEvent.org_id)
             # A user of the event's organization: a client's event names a row id of no user (`Window`).
             .outerjoin(User, (User.id == AuditEvent.subject_id) & (User.org_id == AuditEvent.org_id))
             .where(AuditEvent.at >= window.since))
    if window.until is not None:
        query = query.where(AuditEvent.at < window.until)
    if window.org_id is not None:
        query = query.where(AuditEvent.org_id == window.org_id)
    if window.subject_id is not None:  # in the user's organization: the same id may be a client's (`Window`)
        of_the_users_org = (AuditEvent.org_id == window.subject_org_id if window.subject_org_id is not None
                            else AuditEvent.org_id.is_not(None))
        query = query.where(AuditEvent.subject_id == window.subject_id, of_the_users_org)
    if window.prefix:
        # A prefix, not a pattern: "_" and "%" in it are themselves (event names have "_"). In
        # lower case, as every event name is: SQLite's LIKE ignores case and PostgreSQL's does not,
        # and "LOGIN." found the events on one and none on the other.
        query = query.where(AuditEvent.event.startswith(window.prefix.lower(), autoescape=True))
    rows = db.session.execute(query.order_by(AuditEvent.id).limit(limit + 1)).all()
    more = len(rows) > limit
    return [document(row, org, subject) for row, org, subject in rows[:limit]], more


def document(row: AuditEvent, org: str | None, subject: str | None) -> dict:
    """One event as `idp audit list --json` prints it (and, its organization's columns aside, as
    the admin's CSV download writes it: idp.admin.export). `org` and `subject` are null for an event
    of no organization or about nobody, and for one whose organization or user is gone since;
    `subject` is null too for a subject that is no user (a client's, in its `client.*` events)."""
    return {"id": row.id, "at": iso_utc(row.at), "event": row.event, "org_id": row.org_id,
            "org": org, "actor": row.actor, "actor_id": row.actor_id,
            "subject_id": row.subject_id, "subject": subject, "ip": row.ip,
            "user_agent": row.user_agent, "details": row.details or {}}


def text_line(document: dict) -> str:
    """One event on one line: time, event, organization, actor, subject, address, details. The
    subject is the user's address, or their id when they are gone; an event of no organization
    names no user (a client's names it in its details)."""
    import json

    subject = document["subject"] or (document["subject_id"] if document["org_id"] is not None else None)
    parts = [document["at"], document["event"], f"org={document['org'] or '-'}",
             f"actor={document['actor'] or '-'}", f"subject={subject or '-'}", f"ip={document['ip'] or '-'}"]
    if document["details"]:
        parts.append(json.dumps(document["details"], sort_keys=True, ensure_ascii=False))
    return _printable("  ".join(str(part) for part in parts))


def _printable(text: str) -> str:
    """`text` for the operator's terminal: each character that is not printable as its JSON escape
    (\\u009b), so that the details stay JSON. The details hold text that people outside the
    operator's trust typed (an organization's admin writes an exemption's reason), and json.dumps
    leaves as they are the C1 controls, which a terminal may obey (U+009B begins an escape
    sequence, U+009D sets the window's title), and the invisible characters that reorder a line
    (U+202E); a lone surrogate would make the line unprintable."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    units = char.encode("utf-16-be", "surrogatepass")  # (beyond U+FFFF: a surrogate pair, as JSON spells it)
    return "".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))
