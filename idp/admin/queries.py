"""The admin pages' reads: one indexed SQL statement each, whatever the organization's size.

Lists use keyset pagination over the primary key (``WHERE id > :after ORDER BY id
LIMIT n+1``, or backwards with ``before``) on the ``(org_id, id)`` index, never
OFFSET; the 2FA status is the SQL CASE of idp.policy.status, computed in the same
statement, so there is no per-user query or loop in Python.

The audit log filtered by people (idp.admin.queries.audit_page) first resolves them in the
users table, which is small, then reads their events through the organization's
(org_id, subject_id / actor_id, id) indexes: a search for one person reads that person's
events, whatever the log's size (it once scanned the whole log, newest first, for events
of a person who had few: a second at two million events).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Integer, Select, bindparam, func, or_, select, true, union
from sqlalchemy.dialects.postgresql import ARRAY

from idp.db import db, unicode_lower
from idp.models import AuditEvent, User
from idp.policy.status import TwoFactorStatus, exempt_expr, status_expr

PAGE_SIZE = 50
MAX_QUERY = 200


@dataclass(frozen=True)
class UserRow:
    id: int
    email: str
    name: str
    role: str
    disabled: bool
    status: TwoFactorStatus
    mfa_setting: str
    exempt_until: date | None
    last_login_at: object
    push_suspended_at: datetime | None = None
    created_at: datetime | None = None
    exempt_reason: str | None = None


@dataclass(frozen=True)
class Page:
    rows: list
    next_after: int | None   # pass as ?after= for the next page
    prev_before: int | None  # pass as ?before= for the previous page


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _window(query, id_column, after: int | None, before: int | None, limit: int, descending: bool = False):
    """`query` cut to one page over `id_column`: past the cursor, in the page's reading order
    (backwards from `before`), `limit` + 1 rows (the extra one says whether more follow)."""
    forward = before is None
    if descending:
        forward_order, backward_order = id_column.desc(), id_column.asc()
        if after is not None:
            query = query.where(id_column < after)
        if before is not None:
            query = query.where(id_column > before)
    else:
        forward_order, backward_order = id_column.asc(), id_column.desc()
        if after is not None:
            query = query.where(id_column > after)
        if before is not None:
            query = query.where(id_column < before)
    return query.order_by(forward_order if forward else backward_order).limit(limit + 1)


def _keyset(query, id_column, after: int | None, before: int | None, limit: int, descending: bool = False):
    """Run `query` one page at a time over `id_column`; returns (rows, has_more_forward, has_more_back)."""
    forward = before is None
    query = _window(query, id_column, after, before, limit, descending)
    rows = db.session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    if forward:
        return rows, more, after is not None
    return rows, True, more


def users_page(org, *, today: date, search: str = "", status: TwoFactorStatus | None = None, exempt: bool = False,
               after: int | None = None, before: int | None = None, limit: int = PAGE_SIZE) -> Page:
    expr = status_expr(today, org_require=bool(org.require_2fa))
    query = select(User.id, User.email, User.name, User.role, User.disabled, expr.label("status"),
                   User.mfa_setting, User.exempt_until, User.last_login_at,
                   User.push_suspended_at, User.created_at, User.exempt_reason).where(User.org_id == org.id)
    search = (search or "").strip()[:MAX_QUERY]
    if search:
        query = query.where(_person_matches(search))
    if status is not None:  # as the distribution counts them (its links lead here): enabled accounts
        query = query.where(expr == status.value, User.disabled.is_(False))
    if exempt:  # as impact_of_requiring_all counts them (the count shown beside the filter): enabled accounts
        query = query.where(exempt_expr(today), User.disabled.is_(False))
    rows, more_forward, more_back = _keyset(query, User.id, after, before, limit)
    items = [UserRow(id=r.id, email=r.email, name=r.name, role=r.role, disabled=r.disabled,
                     status=TwoFactorStatus(r.status), mfa_setting=r.mfa_setting, exempt_until=r.exempt_until,
                     last_login_at=r.last_login_at, push_suspended_at=r.push_suspended_at,
                     created_at=r.created_at, exempt_reason=r.exempt_reason) for r in rows]
    return Page(rows=items,
                next_after=items[-1].id if items and more_forward else None,
                prev_before=items[0].id if items and more_back else None)


def _person_matches(search: str):
    """A user whose e-mail address or name contains `search`, in any case. The address is stored
    lower-cased (idp.users.normalised_email, its only writer), so it is compared as it is:
    lower() over every member's address was a third of a search's time at 100,000 members."""
    pattern = f"%{_escape_like(search.lower())}%"
    # A search of ASCII letters meets a name's in any case with the database's lower(); one with
    # other letters ("Émile") needs unicode_lower, which on SQLite is a Python call per member
    # (five times the scan's cost at 100,000 members): only then.
    name = func.lower(User.name) if search.isascii() else unicode_lower(User.name)
    return or_(User.email.like(pattern, escape="\\"), name.like(pattern, escape="\\"))


# A search matching at most this many users reads each one's latest events on the
# organization's (org_id, subject_id / actor_id, id) indexes (about 30 ms for 1,000 users at
# two million events). A broader one (over 2% of a 100,000-member organization) matches so
# many that the organization's log read newest first meets a page of theirs within a few
# thousand events.
LISTED_USERS = 2000


def people_matching(org_id: int, search: str) -> list[int] | Select:
    """The organization's users whose e-mail or name contains `search`: their ids, read from the
    users table (one scan, which stops at LISTED_USERS + 1 matches), or when there are more
    than LISTED_USERS, the query that finds them (for audit_page's broad path)."""
    query = select(User.id).where(User.org_id == org_id, _person_matches(search[:MAX_QUERY]))
    ids = list(db.session.scalars(query.limit(LISTED_USERS + 1)))
    return ids + _deleted_matching(org_id, search[:MAX_QUERY]) if len(ids) <= LISTED_USERS else query


def _deleted_matching(org_id: int, search: str) -> list[int]:
    """The ids of the organization's deleted users whose address, as their `user.deleted` event
    recorded it (idp.users.delete), contains `search`: the trail of someone who left is found by
    their address as before. Their deletions only (ix_audit_org_event): a few rows."""
    address = AuditEvent.details["email"].as_string()
    return list(db.session.scalars(select(AuditEvent.subject_id).where(
        AuditEvent.org_id == org_id, AuditEvent.event == "user.deleted", AuditEvent.subject_id.is_not(None),
        address.like(f"%{_escape_like(search.lower())}%", escape="\\")).limit(LISTED_USERS)))


def audit_page(org_id: int, *, subject_ids=None, action: str = "",
               after: int | None = None, before: int | None = None, limit: int = PAGE_SIZE) -> Page:
    """Newest first. ``subject_ids``: events by or about these users (a list of ids, or a query of
    user ids: people_matching's); ``action``: event name prefix, in any case.

    Every statement is confined to `org_id`: the events', and the people's lateral reads."""
    conditions = [AuditEvent.org_id == org_id]
    # In lower case, as every event name is: SQLite's LIKE ignores case, PostgreSQL's does not.
    action = (action or "").strip()[:64].lower()
    if action:
        conditions.append(AuditEvent.event.like(f"{_escape_like(action)}%", escape="\\"))
    if isinstance(subject_ids, (list, tuple, set)):
        if not subject_ids:
            return Page(rows=[], next_after=None, prev_before=None)  # nobody matched: nothing to read
        if db.engine.dialect.name == "postgresql":
            return _listed_people_page(list(subject_ids), conditions, after, before, limit)
    query = select(AuditEvent).where(*conditions)
    if subject_ids is not None:
        if isinstance(subject_ids, Select):
            subject_ids = select(subject_ids.cte("matched").c.id)  # the users read once, not once per column
        query = query.where(or_(AuditEvent.subject_id.in_(subject_ids), AuditEvent.actor_id.in_(subject_ids)))
    return _event_page(query, after, before, limit)


def _listed_people_page(user_ids: list[int], conditions: list, after: int | None, before: int | None,
                        limit: int) -> Page:
    """The events by or about a few users (PostgreSQL): for each user, the newest `limit` + 1
    past the cursor of each index, ix_audit_org_subject and ix_audit_org_actor (a LATERAL
    read per user, index-only: the event's name is an INCLUDE column, so an action filter
    is checked in the index too); the page is the newest of those, and only its rows are
    read from the table. The cost follows the number of users and their events, not the
    log's size."""
    person = (func.unnest(bindparam("people", user_ids, type_=ARRAY(Integer)))
              .table_valued("id").render_derived(name="person"))
    reads = []
    for column in (AuditEvent.subject_id, AuditEvent.actor_id):
        latest = _window(select(AuditEvent.id).where(column == person.c.id, *conditions),
                         AuditEvent.id, after, before, limit, descending=True).lateral()
        reads.append(select(latest.c.id).select_from(person).join(latest, true()))
    candidates = union(*reads).subquery()
    page_ids = _window(select(candidates.c.id), candidates.c.id, after, before, limit, descending=True)
    return _event_page(select(AuditEvent).where(AuditEvent.id.in_(page_ids)), after, before, limit)


def _event_page(query, after: int | None, before: int | None, limit: int) -> Page:
    rows, more_forward, more_back = _keyset(query, AuditEvent.id, after, before, limit, descending=True)
    items = [r[0] for r in rows]
    return Page(rows=items,
                next_after=items[-1].id if items and more_forward else None,
                prev_before=items[0].id if items and more_back else None)


RECENT_ACTIONS = 5000


def audit_actions(org_id: int, recent: int | None = None) -> list[str]:
    """The event names among the organization's latest `recent` events (RECENT_ACTIONS), for the
    action filter's suggestions: a bounded read backwards on ``ix_audit_org_at``, whatever the
    log's size. (A DISTINCT over the whole log read every event of the organization on each visit,
    a second per page at three million events: every login writes one.) The filter itself takes
    any name or prefix, so an action older than the window is still found by typing it."""
    latest = (select(AuditEvent.event).where(AuditEvent.org_id == org_id)
              .order_by(AuditEvent.at.desc()).limit(recent or RECENT_ACTIONS).subquery())
    return list(db.session.scalars(select(latest.c.event).distinct().order_by(latest.c.event)))


def emails_of(org_id: int, ids: set[int]) -> dict[int, str]:
    """E-mail addresses of the given user ids in the organization (one query), to label log rows."""
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.email).where(User.org_id == org_id, User.id.in_(ids)))
    return {uid: email for uid, email in rows}


def people_of_events(org_id: int, events) -> tuple[dict[int, str], dict[int, str]]:
    """The addresses that name the people of these audit events (their subjects and actors): the
    members' (`emails_of`), and, for subjects no longer in the organization, those their deletion
    recorded (`deleted_emails`). Two queries at most, for the audit page and its CSV download."""
    subjects = {e.subject_id for e in events if e.subject_id}
    emails = emails_of(org_id, subjects | {e.actor_id for e in events if e.actor_id})
    return emails, deleted_emails(org_id, subjects - set(emails))

def deleted_emails(org_id: int, ids: set[int]) -> dict[int, str]:
    """The addresses that `user.deleted` events of the organization recorded for these user ids
    (one query, on ix_audit_org_event; none when `ids` is empty): the audit page names a deleted
    subject by the address the log kept, rather than by a bare id (idp.users.delete)."""
    if not ids:
        return {}
    rows = db.session.execute(select(AuditEvent.subject_id, AuditEvent.details).where(
        AuditEvent.org_id == org_id, AuditEvent.event == "user.deleted", AuditEvent.subject_id.in_(ids)))
    return {subject_id: details["email"] for subject_id, details in rows
            if isinstance(details, dict) and isinstance(details.get("email"), str)}


# --------------------------------------------------------------------------- security alerts

# What the organization's admins are shown as "Recent security alerts": push fraud reports
# and push denials. The phone's answer is recorded by the push plugin's device endpoint
# (``push.*``, with the device, the application and the browser's address), whether or not
# the browser ever comes back; the login pipeline records the same answer again
# (``login.*``) when the waiting browser moves on. Both are read, and a ``login.*`` event
# that follows a ``push.*`` one of the same user and kind is the same incident, shown once.
FRAUD, DENIAL, CLONE = "fraud", "denial", "clone"
ALERT_EVENTS = {
    "push.fraud_reported": FRAUD,
    "login.push_fraud_reported": FRAUD,
    "push.denied": DENIAL,
    "login.second_factor_denied": DENIAL,
    "webauthn.clone_suspected": CLONE,  # a security key's signature counter went backwards
}
FRAUD_EVENTS = tuple(event for event, kind in ALERT_EVENTS.items() if kind == FRAUD)


def latest_fraud_report(org_id: int, user_id: int) -> int:
    """The id of the newest fraud report about this member (0: none): what an admin's "Resume
    push approvals" was asked to confirm in view of (idp.admin.views.resume_push)."""
    return int(db.session.scalar(select(func.max(AuditEvent.id)).where(
        AuditEvent.org_id == org_id, AuditEvent.subject_id == user_id, AuditEvent.event.in_(FRAUD_EVENTS))) or 0)


ALERT_DAYS = 30
ALERT_LIMIT = 20
SAME_INCIDENT = timedelta(minutes=3)  # a challenge lives 60 s; the browser's echo follows within that


@dataclass(frozen=True)
class Alert:
    id: int
    at: datetime
    kind: str                 # FRAUD, DENIAL or CLONE
    event: str
    subject_id: int | None
    email: str | None         # None: the user is gone (or not in this organization)
    device: str | None
    application: str | None
    ip: str | None
    reason: str | None = None  # a denial's: "wrong_number" (the number typed was not the login's), "denied"


def security_alerts(org_id: int, *, now: datetime, days: int = ALERT_DAYS, limit: int = ALERT_LIMIT) -> list[Alert]:
    """The organization's push fraud reports and denials of the last `days` days, newest first.

    One statement: the events (``org_id`` and event name, on ``ix_audit_org_event``) with their
    user's e-mail joined in, confined to the organization on both sides. Twice `limit` rows are
    read so that the browser-side echoes dropped below still leave `limit` incidents to show.
    """
    since = now - timedelta(days=days)
    rows = db.session.execute(
        select(AuditEvent.id, AuditEvent.at, AuditEvent.event, AuditEvent.subject_id, AuditEvent.details,
               User.email)
        .outerjoin(User, (User.id == AuditEvent.subject_id) & (User.org_id == AuditEvent.org_id))
        .where(AuditEvent.org_id == org_id, AuditEvent.event.in_(list(ALERT_EVENTS)), AuditEvent.at >= since)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(2 * limit)
    ).all()
    device_answers = [(r.subject_id, ALERT_EVENTS[r.event], r.at) for r in rows if r.event.startswith("push.")]
    alerts = []
    for r in rows:
        kind = ALERT_EVENTS[r.event]
        if not r.event.startswith("push.") and any(
                subject == r.subject_id and k == kind and r.at - SAME_INCIDENT <= at <= r.at
                for subject, k, at in device_answers):
            continue  # the browser's record of an answer already listed
        details = r.details if isinstance(r.details, dict) else {}
        alerts.append(Alert(id=r.id, at=r.at, kind=kind, event=r.event, subject_id=r.subject_id, email=r.email,
                            device=_short(details.get("device_name") or details.get("label")), application=_short(details.get("application")),
                            ip=_short(details.get("ip")), reason=_short(details.get("reason"), 40)))
    return alerts[:limit]


def _short(value, limit: int = 120) -> str | None:
    """A detail written from a device's request: text, bounded, or nothing."""
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:limit] or None
