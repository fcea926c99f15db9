"""`idp user import`: an organization's users brought over from Keycloak, authentik or another system,
their passwords and authenticator apps kept, so that nobody resets anything on migration day.

The file is read whole and checked whole before anything is written (`check`): every bad line
is reported, with its number and the reason, and then nothing is imported. Then one
transaction writes every user (`write`): a 10,000-user file is a few seconds, since nothing is
hashed here. Passwords arrive as the old system's hashes and stay so until each user's first
login verifies one by its own algorithm and replaces it with argon2id
(idp.security.foreign_hashes, idp.login.steps.password).

Second factors come as lists under a factor's name (`"totp": [{"secret": ...}]`); the factor
checks and stores them itself (`Factor.parse_import`, `Factor.import_credential`, the calls
`idp factor totp import` makes): the core names no plugin. Every user gets one `user.imported`
event (`source`, `password`: the hash's scheme or null, `factors`: how many of each), flushed
with the users in multi-row INSERTs; no notice mail goes out (the user's own methods, not changes to an account
they had here). A user given a second factor owes recovery codes, shown once at their next
sign-in, as after `idp factor totp import` (idp.factors.directory.owe_recovery_codes).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from idp.security import foreign_hashes

CORE_FIELDS = ("email", "name", "role", "email_verified", "disabled", "password_hash")
MAX_FILE_BYTES = 256 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"  # (what a file saved by some Windows editors starts with)


@dataclass
class Problem:
    where: str     # "line 3", or "users[2] (jdoe)" for a Keycloak export
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Incoming:
    """One user as the file gives them, checked."""
    where: str
    email: str
    name: str = ""
    role: str = "user"
    email_verified: bool = True
    disabled: bool = False
    password_hash: str | None = None
    factors: dict[str, list] = field(default_factory=dict)  # factor name -> what its parse_import returned
    notes: list[str] = field(default_factory=list)         # credentials left behind (a Keycloak HOTP)

    @property
    def password_scheme(self) -> str | None:
        if self.password_hash is None:
            return None
        if self.password_hash.startswith(foreign_hashes.ARGON2_PREFIX):
            return self.password_hash.split("$")[1]
        return (foreign_hashes.describe(self.password_hash) or {}).get("type")


class ImportRefused(Exception):
    """The file cannot be imported; `problems` says where and why (one per line on stderr)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


# --------------------------------------------------------------------------- reading

def records_of_jsonl(data: bytes) -> list[tuple[str, Any, list[str]]]:
    """(where, the decoded object or a Problem, notes) per non-blank line."""
    records: list[tuple[str, Any, list[str]]] = []
    for number, raw in enumerate(data.removeprefix(_BOM).split(b"\n"), start=1):
        where = f"line {number}"
        if not raw.strip():
            continue
        try:
            decoded = json.loads(raw.decode("utf-8"))
            # (None is how a reader says "skipped": a line `null` is no user, and says so.)
            records.append((where, Problem(where, "not a JSON object") if decoded is None else decoded, []))
        except UnicodeDecodeError:
            records.append((where, Problem(where, "not UTF-8 text"), []))
        except (ValueError, RecursionError) as exc:
            records.append((where, Problem(where, f"not JSON ({_json_error(exc, 'column')})"), []))
    return records


def _json_error(exc: ValueError | RecursionError, position: str) -> str:
    """What the JSON reader refused, in one line. Not only JSONDecodeError: a number past Python's
    4,300 digits is a bare ValueError, nesting past the recursion limit a RecursionError."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg}, {position} {exc.colno if position == 'column' else exc.lineno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def records_of_keycloak(data: bytes) -> list[tuple[str, Any, list[str]]]:
    """A Keycloak realm export (`kc.sh export`, or the admin console's partial export with users)
    as this import's own records, with each user's notes on what is left behind."""
    from idp import keycloak_export

    try:
        document = json.loads(data.removeprefix(_BOM).decode("utf-8"))
    except UnicodeDecodeError:
        raise ImportRefused([Problem("file", "not UTF-8 text")]) from None
    except (ValueError, RecursionError) as exc:
        raise ImportRefused([Problem("file", f"not JSON ({_json_error(exc, 'line')})")]) from None
    return keycloak_export.records(document)


# --------------------------------------------------------------------------- checking

def check(records: Iterable[tuple[str, Any, list[str]]], org) -> list[Incoming]:
    """Every record checked (and the e-mail addresses against the database): the users to import,
    or ImportRefused listing every problem. A record None is a user the reader skipped (its notes
    say why)."""
    from idp.factors.registry import current_registry

    registry = current_registry()
    problems: list[Problem] = []
    users: list[Incoming] = []
    first_seen: dict[str, str] = {}
    for where, record, notes in records:
        if record is None:
            continue
        if isinstance(record, Problem):
            problems.append(record)
            continue
        found = _check_one(where, record, registry, org, notes)
        if isinstance(found, Problem):
            problems.append(found)
            continue
        if found.email in first_seen:
            problems.append(Problem(where, f"duplicate e-mail {found.email} (also at {first_seen[found.email]})"))
            continue
        first_seen[found.email] = where
        users.append(found)
    for email, where in _taken(first_seen):
        problems.append(Problem(where, f"a user with the e-mail address {email} already exists (in this "
                                       "organization or another): nothing is overwritten"))
    if not users and not problems:
        problems.append(Problem("file", "no users in it"))
    if problems:
        problems.sort(key=_position)
        raise ImportRefused(problems)
    return users


def _position(problem: Problem) -> tuple:
    digits = "".join(ch if ch.isdigit() else " " for ch in problem.where).split()
    return (int(digits[0]) if digits else -1, problem.reason)


def _check_one(where: str, record: Any, registry, org, notes: list[str]) -> Incoming | Problem:
    from idp.users import MAX_NAME_LENGTH, ROLES, AccountRefused, normalised_email

    if not isinstance(record, dict):
        return Problem(where, "not a JSON object")
    if "email" not in record:
        return Problem(where, "email is missing")
    if not isinstance(record["email"], str):
        return Problem(where, "email must be a string")
    try:
        email = normalised_email(record["email"])
    except AccountRefused as exc:
        return Problem(where, str(exc))
    user = Incoming(where=where, email=email, notes=list(notes))
    name = record.get("name", "")
    if not isinstance(name, str) or len(name.strip()) > MAX_NAME_LENGTH or not name.strip().isprintable():
        return Problem(where, f"name must be a string of at most {MAX_NAME_LENGTH} printable characters")
    user.name = name.strip()
    user.role = record.get("role", "user")
    if user.role not in ROLES:
        return Problem(where, f"role must be one of {', '.join(ROLES)} (got {user.role!r})")
    for flag in ("email_verified", "disabled"):
        value = record.get(flag, getattr(user, flag))
        if not isinstance(value, bool):
            return Problem(where, f"{flag} must be true or false")
        setattr(user, flag, value)
    if record.get("password_hash") is not None:
        try:
            user.password_hash = foreign_hashes.importable(record["password_hash"])
        except foreign_hashes.HashRefused as exc:
            return Problem(where, f"password_hash: {exc}")
    for key, value in record.items():
        if key in CORE_FIELDS or value is None:  # (`"totp": null`: none, as when absent)
            continue
        problem = _check_factor(key, value, registry, org)
        if isinstance(problem, str):
            return Problem(where, problem)
        user.factors[key] = problem
    return user


def _check_factor(name: str, items: Any, registry, org) -> list | str:
    """What the factor `name` made of `items` (each item's `parse_import`), or a reason."""
    if name not in registry or not type(registry.get(name)).imports_credentials():
        known = ", ".join(list(CORE_FIELDS) + sorted(f.name for f in registry.all() if type(f).imports_credentials()))
        return f"unknown field {name!r} (known: {known}; a factor listed in factors.disabled imports nothing)"
    if org.allowed_factors is not None and name not in org.allowed_factors:
        return f"the organization does not accept {name} (idp policy factors)"
    if not isinstance(items, list):
        return f"{name} must be a list of credentials"
    factor, prepared = registry.get(name), []
    for index, item in enumerate(items):
        try:
            prepared.append(factor.parse_import(item))
        except ValueError as exc:
            return f"{name}[{index}]: {exc}"
    return prepared


def _taken(first_seen: dict[str, str]) -> list[tuple[str, str]]:
    """(e-mail, where) for the addresses some user has already, in any organization: one SELECT per
    500 addresses."""
    from sqlalchemy import select

    from idp.db import db
    from idp.models import User

    emails = list(first_seen)
    taken: list[str] = []
    for start in range(0, len(emails), 500):
        taken += db.session.scalars(select(User.email).where(User.email.in_(emails[start:start + 500]))).all()
    return [(email, first_seen[email]) for email in taken]


# --------------------------------------------------------------------------- writing

def no_way_in(user: Incoming, reset_links: bool) -> str | None:
    """Why a user imported without a password cannot set one with "Forgot your password?" (no link
    is mailed to an unverified address: idp.password_reset, `email_unverified`; none at all with
    the links off), for a warning; None when they can, or have a password."""
    if user.password_hash is not None:
        return None
    if not reset_links:
        return "no password, and password reset links are off ([password_reset] enabled)"
    if not user.email_verified:
        return 'no password, and "Forgot your password?" mails no link to an unverified address'
    return None


@dataclass
class Written:
    users: int = 0
    with_password: dict[str, int] = field(default_factory=dict)  # scheme -> users
    without_password: int = 0
    without_password_unverified: int = 0  # of those, with an unverified address (no reset link for them)
    credentials: dict[str, int] = field(default_factory=dict)    # factor -> credentials
    recovery_codes_owed: int = 0


def write(org, users: list[Incoming], *, source: str) -> Written:
    """Insert every user, their credentials and their events in the session's transaction (the
    caller commits). A factor refusing a credential at this point (the same secret twice for one
    user) is an ImportRefused like any check's, and the caller rolls everything back."""
    from idp import audit
    from idp.db import db
    from idp.factors.directory import owe_recovery_codes, user_ref
    from idp.factors.registry import current_registry
    from idp.factors.types import FactorKind
    from idp.models import User
    from idp.security.tokens import random_token

    rows = [User(org_id=org.id, email=u.email, name=u.name, role=u.role, public_id=random_token(24),
                 email_verified=u.email_verified, disabled=u.disabled, password_hash=u.password_hash)
            for u in users]
    db.session.add_all(rows)
    db.session.flush()  # one multi-row INSERT (per batch of the driver's size), ids returned
    registry, done, events = current_registry(), Written(), []
    for incoming, row in zip(users, rows, strict=True):
        ref, counts, owed = user_ref(row), {}, False
        for name, prepared in incoming.factors.items():
            factor = registry.get(name)
            for index, item in enumerate(prepared):
                try:
                    factor.import_credential(ref, item)
                except ValueError as exc:
                    raise ImportRefused([Problem(incoming.where, f"{name}[{index}]: {exc}")]) from None
            counts[name] = len(prepared)
            done.credentials[name] = done.credentials.get(name, 0) + len(prepared)
            if prepared and factor.kind == FactorKind.SECOND_FACTOR:
                owed = True
        if owed:
            owed = owe_recovery_codes(ref)
            done.recovery_codes_owed += owed
        scheme = incoming.password_scheme
        if scheme:
            done.with_password[scheme] = done.with_password.get(scheme, 0) + 1
        else:
            done.without_password += 1
            done.without_password_unverified += not incoming.email_verified
        events.append(dict(event="user.imported", org_id=org.id, actor="cli", subject_id=row.id,
                           details={"email": row.email, "role": row.role, "source": source, "password": scheme,
                                    "factors": counts, "disabled": row.disabled,
                                    "email_verified": row.email_verified, "recovery_codes_owed": owed,
                                    **({"left_behind": incoming.notes} if incoming.notes else {})}))
    # ORM rows, flushed in the driver's batches (audit.record_all_now's single deferred INSERT
    # would pass PostgreSQL's limit of 65,535 parameters from about 7,000 users on).
    for event in events:
        audit.record(event.pop("event"), **event)
    db.session.flush()
    done.users = len(rows)
    return done


def describe(user: Incoming) -> str:
    """One line of `--dry-run`'s listing."""
    factors = ", ".join(f"{name} x{len(items)}" for name, items in user.factors.items() if items)
    return "  ".join(part for part in (
        f"{user.where}: {user.email}", user.role, "disabled" if user.disabled else "",
        f"password {user.password_scheme}" if user.password_hash else "no password (reset link)",
        factors, "" if user.email_verified else "e-mail not verified") if part)
