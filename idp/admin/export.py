"""The admin pages' "Download CSV": the users list and the audit log as a spreadsheet, for
auditors and compliance reports.

What a download holds is the page's filtered set, every page of it: the rows are read with the
page's own query (idp.admin.queries), BATCH at a time by the same key ranges its pager follows,
and written to the answer as they are read. A 100,000-member organization is never in memory at
once, and between two batches no database transaction stays open while the browser reads at its
own pace (one held for the whole download would keep a pooled connection, and on PostgreSQL a
snapshot that holds back vacuum, for as long as the slowest client takes). The batches are
separate reads: a row changed during a download may show as it was or as it is, and the key
ranges see every row that existed throughout exactly once.

The cells are what `idp user list --json` and `idp audit list --json` print (the same statuses,
times in ISO 8601 UTC with "Z", the event's details as JSON), so that a report and a script
agree; the event's label is the page's, in the admin's language.

The file is UTF-8 with a byte order mark and commas (RFC 4180, CRLF line ends): without the
mark Excel reads UTF-8 as the ANSI code page ("Ã©" for "é"), and LibreOffice Calc takes the
mark as the encoding in its import dialog. A cell a spreadsheet would read as a formula (it
begins with =, +, -, @, a tab or a carriage return) is written with a leading apostrophe
(OWASP, "CSV Injection"): names, addresses and exemption reasons are text other people typed. So
is one that follows a semicolon, a comma, a tab or a line break inside a cell: a spreadsheet that
splits lines at ";" (Excel in a French or German locale) would start a cell there.
"""
from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Iterator
from urllib.parse import quote

from flask import Response, current_app, g, request
from werkzeug.exceptions import TooManyRequests

from idp import audit, audit_export, audit_labels
from idp.admin import queries
from idp.db import db
from idp.factors.cli import iso_utc
from idp.factors.ratelimit import spend_request
from idp.factors.types import FactorKind
from idp.policy.status import EXEMPT, REQUIRED, TwoFactorStatus, is_exempt, is_required, today_utc

# Rows read per statement: the size `idp user list` pages by.
BATCH = 1000
# The most events one download holds, the newest: `idp audit list --limit`'s ceiling. Past it the
# file ends with a note (`event_labels`' TRUNCATED), and the admin narrows the filters (or the
# operator reads the rest with `idp audit list`).
MAX_AUDIT_ROWS = 100_000

USER_COLUMNS = ("email", "name", "role", "disabled", "two_factor_status", "required", "exempt_until", "methods",
                "last_login_at", "created_at")
AUDIT_COLUMNS = ("id", "at", "event", "label", "actor", "actor_id", "subject_id", "subject", "ip", "user_agent",
                 "details")

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A formula start right after a character some spreadsheet splits a line at: Excel in a French or
# German locale opens a .csv split at ";" (its list separator), others at tabs, and a line break
# ends a line for a reader that missed the quotes. "x;=cmd|..." is one cell here, two there.
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;,\t\r\n])(?=[=+\-@\t\r])")


def csv_response(kind: str, filters: dict, batches: Iterator[list[list]], columns: tuple[str, ...]) -> Response:
    """The download of `batches` (rows, read as they are sent) under `columns`, for the signed-in
    admin (`g.admin`, `g.org`): limited per admin, audited before the first row goes out.

    `admin.exported` names the list and the filters, not the number of rows: that is known
    only once the last one is sent, and a download the browser abandons half-way would then
    leave no event at all. Its own event is the first of an audit log's download."""
    admin, org = g.admin, g.org
    headers = {"Content-Disposition": content_disposition(kind, org.name, today_utc()), "Cache-Control": "no-store"}
    if request.method == "HEAD":  # (Flask answers HEAD with the GET view) nothing is read, nothing leaves
        return Response(mimetype="text/csv", headers=headers)
    wait = spend_request(current_app.extensions["idp.settings"].get("ratelimit.admin_exports", "10 per minute"),
                         "admin_export", str(admin.id))
    if wait is not None:
        raise TooManyRequests(retry_after=wait)
    audit.record("admin.exported", org_id=org.id, actor_id=admin.id, actor=admin.email,
                 details={"list": kind, "filters": {k: v for k, v in filters.items() if v not in ("", None)}})
    db.session.commit()
    return Response(_each_in_app_context(current_app._get_current_object(), csv_chunks(columns, batches)),
                    mimetype="text/csv", headers=headers)


def _each_in_app_context(app, chunks: Iterator[str]) -> Iterator[str]:
    """`chunks`, each read (a batch's statements) in an application context of its own, pushed
    and popped around that one step: its teardown removes the database session, so the
    connection goes back to the pool and no transaction stays open while the browser takes the
    rows at its own pace. The download is sent after the request's own context has gone, so
    what the rows need of the request (the organization, the admin's language) is read before.

    (Not Flask's stream_with_context, which keeps the request's context pushed from the view
    until the server's loop pops it, a connection and its snapshot held for the whole download;
    nor one context held across the yields: a download left unread is closed wherever the
    server, or the garbage collector, drops it, and a context must be popped where it was pushed.)"""
    iterator = iter(chunks)
    while True:
        with app.app_context():
            chunk = next(iterator, None)
        if chunk is None:
            return
        yield chunk


@dataclass(frozen=True)
class OrgFacts:
    """What the rows need of the admin's organization, read before the request's session goes."""

    id: int
    name: str
    require_2fa: bool

    @classmethod
    def of(cls, org) -> "OrgFacts":
        return cls(id=org.id, name=org.name, require_2fa=bool(org.require_2fa))


def cell(value) -> str:
    """A value as its CSV cell: None as nothing, text defused against formula injection."""
    if value is None:
        return ""
    text = _FORMULA_AFTER_SEPARATOR.sub(r"\1'", str(value))
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_chunks(header: Iterable[str], batches: Iterable[list[list]]) -> Iterator[str]:
    """The byte order mark with the header line, then each batch's CSV lines as one piece, each
    cell through `cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # excel dialect: commas, "quoted" when needed, CRLF

    def lines(rows) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([cell(v) for v in row] for row in rows)
        return buffer.getvalue()

    yield "\ufeff" + lines([header])
    for rows in batches:
        if rows:
            yield lines(rows)


def content_disposition(kind: str, org_name: str, day: date) -> str:
    """`attachment` with `<kind>-<org>-<date>.csv`: an ASCII `filename` that any client takes
    (letters, digits, dots and dashes only, so nothing to quote or to misread as a path), and
    RFC 6266's `filename*` (UTF-8, RFC 5987) when the organization's name is not all that."""
    ascii_name = f"{kind}-{_ascii_slug(org_name)}-{day.isoformat()}.csv"
    header = f'attachment; filename="{ascii_name}"'
    readable = re.sub(r'[\x00-\x1f\x7f/\\"]+', "-", unicodedata.normalize("NFC", org_name)).strip(" .-") or "org"
    full = f"{kind}-{readable}-{day.isoformat()}.csv"
    if full != ascii_name:
        header += f"; filename*=UTF-8''{quote(full, safe='')}"
    return header


def _ascii_slug(name: str) -> str:
    """The name's letters without their accents ("École" -> "Ecole"), runs of anything else as
    one dash; "org" when nothing is left (a name in another script)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9.]+", "-", plain).strip(".-")[:80] or "org"


# --------------------------------------------------------------------------- users

def user_batches(org: OrgFacts, *, today: date, search: str, status: TwoFactorStatus | None, exempt: bool,
                 registry) -> Iterator[list[list]]:
    """The users the list shows under these filters, every page of them, BATCH at a time, as
    USER_COLUMNS cells (`registry`: the factor registry, for the credentials held and their kinds)."""
    after = None
    while True:
        page = queries.users_page(org, today=today, search=search, status=status, exempt=exempt, after=after,
                                  limit=BATCH)
        held = registry.store.factors_held_by(row.id for row in page.rows)
        yield [[row.email, row.name, row.role, _yes_no(row.disabled), row.status.value,
                _required(row, org, today), _exempt_until(row, today),
                ", ".join(_methods(held.get(row.id, ()), registry)),
                iso_utc(row.last_login_at) if row.last_login_at else None,
                iso_utc(row.created_at) if row.created_at else None]
               for row in page.rows]
        if page.next_after is None:
            return
        after = page.next_after


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _required(row, org, today: date) -> str:
    """Whether the login asks the user for a second factor, and by whose decision: `yes (everyone)`
    (the organization's rule), `yes (user)` (required for this user, or their exemption has
    ended), `no (exempt)` (waived), `no`."""
    if is_exempt(row, today):
        return "no (exempt)"
    if not is_required(row, org, today):
        return "no"
    return "yes (user)" if row.mfa_setting in (REQUIRED, EXEMPT) else "yes (everyone)"


def _exempt_until(row, today: date) -> str | None:
    """The last day of a running exemption; nothing for one granted for good, as for no exemption
    (`required` says which)."""
    return row.exempt_until.isoformat() if is_exempt(row, today) and row.exempt_until else None


def _methods(names: Iterable[str], registry) -> list[str]:
    """The factors held, second factors first, then the recovery ones, each group by name."""
    return sorted(names, key=lambda name: (registry.kind_of(name) == FactorKind.RECOVERY, name))


# --------------------------------------------------------------------------- audit log

def audit_batches(org: OrgFacts, *, subject_ids, action: str, labels: dict[str, str | None],
                  limit: int | None = None) -> Iterator[list[list]]:
    """The events the log shows under these filters, newest first, at most `limit`
    (MAX_AUDIT_ROWS), BATCH at a time, as AUDIT_COLUMNS cells, each event's label from `labels`
    (`event_labels`: in the admin's language); past `limit`, a last row whose first cell says so
    (`labels[TRUNCATED]`)."""
    limit = limit or MAX_AUDIT_ROWS
    written, after = 0, None
    while written < limit:
        page = queries.audit_page(org.id, subject_ids=subject_ids, action=action, after=after,
                                  limit=min(BATCH, limit - written))
        emails, deleted = queries.people_of_events(org.id, page.rows)
        emails.update(deleted)  # a deleted subject by the address its deletion recorded, as the page names it
        batch = []
        for event in page.rows:
            doc = audit_export.document(event, org.name, emails.get(event.subject_id))
            batch.append([doc["id"], doc["at"], doc["event"], labels.get(doc["event"]),
                          doc["actor"] or emails.get(event.actor_id), doc["actor_id"], doc["subject_id"],
                          doc["subject"], doc["ip"], doc["user_agent"],
                          json.dumps(doc["details"], sort_keys=True, ensure_ascii=False) if doc["details"] else None])
        yield batch
        written += len(page.rows)
        if page.next_after is None:
            return
        after = page.next_after
    yield [[labels[TRUNCATED]]]


TRUNCATED = ""  # (no event has this name)


def event_labels() -> dict[str, str | None]:
    """Every event's label in the request's language, and the truncation note (`TRUNCATED`): the
    rows are written after the request has gone, its language with it."""
    from idp.template_i18n import plural_text

    labels = {event: audit_labels.label_of(event) for event in audit_labels.LABELS}
    labels[TRUNCATED] = "# " + plural_text(
        "More events match: only the newest %(num)s is in this file. Narrow the filters.",
        "More events match: only the newest %(num)s are in this file. Narrow the filters.", MAX_AUDIT_ROWS)
    return labels
