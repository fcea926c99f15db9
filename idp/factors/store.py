"""The credential store: the only code that reads or writes the `credentials` table.

Plugins get a store bound to their factor name (`self.store`) and never see a
model: every method takes a `UserRef` (or a user id) and returns
`CredentialInfo` values. The verbs that decide "exactly once" are single
conditional statements that commit at once (`advance_counter`, `consume`), so
two processes cannot both accept the same TOTP step or recovery code; during a
login step they commit with the step's outcome instead (`gates_commit_with_step`).
The other
writes (`create`, `replace_set`, `rename`, `revoke`, `touch`) join the caller's
transaction and are committed by the caller together with its audit event.

Secrets are sealed with the key ring (AES-256-GCM) under the associated data
`factor|user_id|credential_id`: a ciphertext copied into another row, another
user or another factor does not open. The id exists only after the INSERT, so
`create` inserts, flushes, then seals and sets the secret.

`User.second_factor_count` (the policy's indexed status expression depends on
it) is kept in the same transaction: +1 on creating, -1 on revoking a
credential of a SECOND_FACTOR-kind factor; `replace_set` recounts with a
subquery. `recount_second_factors` repairs the column for everyone (for
example after a factor is disabled).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from flask import current_app, g, has_request_context
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from idp.db import db, utcnow
from idp.lone import REPEATS, repeated_json
from idp.factors.contract import LABEL_MAX
from idp.factors.directory import lock_user
from idp.factors.errors import CredentialConflict, SecretUnavailable
from idp.factors.types import CredentialInfo, FactorKind, UserRef
from idp.models import Credential, User
from idp.security.secrets import SecretError
from idp.security.text import display_text, storable

UserLike = UserRef | int


def _user_id(user: UserLike) -> int:
    return user.id if isinstance(user, UserRef) else int(user)


def _credential_id(credential: CredentialInfo | int) -> int:
    return credential.id if isinstance(credential, CredentialInfo) else int(credential)


def associated_data(factor: str, user_id: int, credential_id: int) -> bytes:
    """What binds a sealed secret to its row."""
    return f"{factor}|{user_id}|{credential_id}".encode()


def to_info(row: Credential) -> CredentialInfo:
    return CredentialInfo(id=row.id, user_id=row.user_id, factor=row.factor, label=row.label or "",
                          public=dict(row.public_json or {}), lookup_key=row.lookup_key,
                          counter=int(row.counter or 0), created_at=row.created_at,
                          last_used_at=row.last_used_at, used_at=row.used_at, revoked_at=row.revoked_at)




# The session keeps objects across commits (expire_on_commit=False) and the gates update rows with
# synchronize_session=False: every read refreshes what it loads instead of trusting the identity map.
_FRESH = {"populate_existing": True}


def _keyring():
    return current_app.extensions["idp.keyring"]


# The login's hot reads and gates as Core statements built once: plain rows, no ORM entities
# (whose loading, with populate_existing, cost more than the queries).
_TABLE = Credential.__table__
_COLUMNS = _TABLE.c
_STATEMENTS: dict[tuple, Any] = {}


def _credentials_of_user(*, live: bool, of_factor: bool):
    """SELECT a user's credentials (`:user_id`, and `:of_factor` when `of_factor`), oldest first."""
    key = ("select", live, of_factor)
    if key not in _STATEMENTS:
        statement = select(*_COLUMNS).where(_COLUMNS.user_id == bindparam("user_id"))
        if live:
            statement = statement.where(_COLUMNS.revoked_at.is_(None))
        if of_factor:
            statement = statement.where(_COLUMNS.factor == bindparam("of_factor"))
        _STATEMENTS[key] = statement.order_by(_COLUMNS.id)
    return _STATEMENTS[key]


# A login page asks several questions of one user's credentials: which factors they hold (the
# policy), the list sorted by last use (the choices), each plugin's own list or its secrets (the
# challenge, the check). Within a request they are answered from one read of the user's live
# rows, kept in `g` and dropped by every write through this store (the only code that writes
# the table), so a request sees its own changes. Outside a request (CLI, maintenance) nothing is
# kept: those run long and may see other processes' writes.
_LIVE_ROWS_KEY = "idp_live_credentials"


def _live_rows(user_id: int) -> list:
    """The user's live credential rows, oldest first (sealed secrets included)."""
    kept = g.setdefault(_LIVE_ROWS_KEY, {}) if has_request_context() else {}
    if user_id not in kept:
        kept[user_id] = db.read_all(_credentials_of_user(live=True, of_factor=False), {"user_id": user_id})
    return kept[user_id]


def with_live_credentials(statement, user_id_column, only_if=None):
    """`statement` (a SELECT whose rows are one user's: `user_id_column` names them) with that
    user's live credential rows joined to it, oldest first: one row per credential, or a single
    one with NULLs for a user who holds none. For a statement the login runs anyway before it
    asks about the user's credentials (the login transaction's load at the second-factor step,
    the password step's user: idp.login.transaction, idp.login.user): one statement instead of
    two. The rows go to `keep_live_rows`. `only_if`: a condition
    on the user's row without which none are joined (and the rows are not the user's list)."""
    joined_when = (_COLUMNS.user_id == user_id_column) & _COLUMNS.revoked_at.is_(None)
    if only_if is not None:
        joined_when = joined_when & only_if
    # Marked as repeating its first columns on every row (idp.lone.Prepared.rows): decoded once.
    # The credentials' JSON as text too: ten recovery codes carry the same "{}", decoded once (rows
    # share it; `to_info` copies it).
    return (statement.outerjoin(_TABLE, joined_when).add_columns(*repeated_json(_COLUMNS)).order_by(_COLUMNS.id)
            .execution_options(**{REPEATS: True}))


def keep_live_rows(user_id: int, rows: list, start: int) -> None:
    """Keep, for the rest of this request, the credential rows that a statement built by
    `with_live_credentials` read (their columns from `start` on): the store's later questions
    about the user's credentials are answered from them, as from its own read (`_live_rows`).
    Dropped as that one is, by any write through the store and any rollback."""
    if not has_request_context():
        return
    live = db.lone().prepared(_credentials_of_user(live=True, of_factor=False)).row_type
    g.setdefault(_LIVE_ROWS_KEY, {})[user_id] = [live(*row[start:]) for row in rows if row[start] is not None]


def _forget_live_rows() -> None:
    """After a write to the credentials table, and after any rollback (a savepoint's included: a
    factor's clean-up hook that changed credentials, read them again, then failed): the next read
    in this request reads again."""
    if has_request_context():
        g.pop(_LIVE_ROWS_KEY, None)


db.forget_on_rollback(_forget_live_rows)


def read_credentials_again() -> None:
    """The next question about a user's credentials in this request reads them from the database,
    not from what the request read before: for a check made under the user's lock that must see
    what a parallel request committed while this one waited for it. `lock_user` calls it; the
    code page's hold (idp.login.transaction.hold_user_at) does not, and a check after it that
    needs it calls it (idp.login.steps.recovery_codes). A factor whose check writes a credential
    (TOTP's step, a recovery code) has dropped the request's copy already; push's approval
    writes none."""
    _forget_live_rows()


_GATES_WITH_STEP = "idp_gates_commit_with_step"


@contextmanager
def gates_commit_with_step() -> Iterator[None]:
    """Within this block the gates do not commit on their own: the login pipeline commits what a
    factor's check spent together with the step's outcome (the transition, the audit event, the
    code), one transaction instead of two.

    Exactly once still holds: the conditional UPDATE keeps the row locked (PostgreSQL) or the
    write lock held (SQLite) until that commit, and a parallel request then finds the counter
    moved or the code used. A step that fails with an error rolls the spending back with
    everything else: the code was not used.
    """
    if not has_request_context():
        yield
        return
    previous = g.get(_GATES_WITH_STEP, False)
    setattr(g, _GATES_WITH_STEP, True)
    try:
        yield
    finally:
        setattr(g, _GATES_WITH_STEP, previous)


def commits_with_step() -> bool:
    """Whether a gate called now leaves its commit to the login step (`gates_commit_with_step`):
    the credential store's, and the challenge store's `answer`."""
    return has_request_context() and g.get(_GATES_WITH_STEP, False)


def _gate(column: str, *, of_factor: bool):
    """The exactly-once UPDATE of `advance_counter` (column "counter") or `consume` ("used_at")."""
    key = ("gate", column, of_factor)
    if key not in _STATEMENTS:
        if column == "counter":
            statement = (update(_TABLE).where(_COLUMNS.id == bindparam("id_"), _COLUMNS.counter < bindparam("new"))
                         .values(counter=bindparam("new"), last_used_at=bindparam("now")))
        else:
            statement = (update(_TABLE).where(_COLUMNS.id == bindparam("id_"), _COLUMNS.used_at.is_(None))
                         .values(used_at=bindparam("now"), last_used_at=bindparam("now")))
        statement = statement.where(_COLUMNS.revoked_at.is_(None))
        if of_factor:
            statement = statement.where(_COLUMNS.factor == bindparam("of_factor"))
        _STATEMENTS[key] = statement.returning(_COLUMNS.id)
    return _STATEMENTS[key]


class CredentialStore:
    """Credential verbs, optionally bound to one factor (`factor`), as plugins receive it.

    Unbound (`factor=None`), it serves the account and admin pages: `list(user)` returns every
    factor's credentials and `revoke(user, id)` works on any of them. `kind_of(name)` tells
    whether a factor's credentials count towards `User.second_factor_count` (the registry
    passes its own lookup).
    """

    def __init__(self, factor: str | None = None,
                 kind_of: Callable[[str], FactorKind | None] | None = None) -> None:
        self.factor = factor
        self._kind_of = kind_of or (lambda name: None)

    def for_factor(self, factor: str) -> "CredentialStore":
        return CredentialStore(factor, self._kind_of)

    # --- helpers -------------------------------------------------------------------------

    def _name(self, factor: str | None) -> str:
        name = factor or self.factor
        if not name:
            raise TypeError("this store is not bound to a factor: pass factor=...")
        return name

    def _counts(self, factor: str) -> bool:
        return self._kind_of(factor) == FactorKind.SECOND_FACTOR

    def _scope(self, factor: str | None = None) -> list:
        name = factor or self.factor
        return [Credential.factor == name] if name else []

    @staticmethod
    def _bump(user_id: int, delta: int) -> None:
        db.session.execute(update(User).where(User.id == user_id)
                           .values(second_factor_count=User.second_factor_count + delta),
                           execution_options={"synchronize_session": False})

    # --- create --------------------------------------------------------------------------

    def create(self, user: UserLike, label: str = "", public: Mapping[str, Any] | None = None,
               secret: bytes | None = None, lookup_key: str | None = None, counter: int = 0, *,
               factor: str | None = None, now: datetime | None = None) -> CredentialInfo:
        """Insert one credential (and seal its secret); the caller commits.

        The label is display text: control characters (NUL among them) are dropped
        (`idp.security.text.display_text`), and it is made distinct among the user's live
        credentials of the factor (`distinct_label`: a second "Pixel 8" is stored as "Pixel 8 (2)").
        Raises `CredentialConflict` when `(factor, lookup_key)` exists; the session stays usable.
        """
        name, user_id = self._name(factor), _user_id(user)
        _forget_live_rows()
        label = display_text(label or "")[:LABEL_MAX]
        if label:
            lock_user(user_id)  # two devices registering at once must not both take the free name
            label = self.distinct_label(user_id, label, factor=name)
        row = Credential(user_id=user_id, factor=name, label=label,
                         public_json=dict(public or {}), lookup_key=lookup_key, counter=counter,
                         created_at=now or utcnow())
        try:
            with db.session.begin_nested():
                db.session.add(row)
                db.session.flush()
        except IntegrityError as exc:
            raise CredentialConflict(f"a {name} credential with this key already exists") from exc
        if secret is not None:
            row.secret_key_id, row.secret_ciphertext = _keyring().seal(
                bytes(secret), associated_data(name, user_id, row.id))
        if self._counts(name):
            self._bump(user_id, +1)
        db.session.flush()
        return to_info(row)

    def replace_set(self, user: UserLike, items: Iterable[Mapping[str, Any]], *, factor: str | None = None,
                    now: datetime | None = None) -> list[CredentialInfo]:
        """Revoke the user's live credentials of this factor and insert `items`, in the caller's transaction.

        Each item is a mapping of `create` keyword arguments (`label`, `public`, `secret`,
        `lookup_key`, `counter`). Used to regenerate recovery codes: the old set stops working
        the moment the new one is committed.
        """
        name, user_id = self._name(factor), _user_id(user)
        _forget_live_rows()
        items = [dict(item) for item in items]
        # One replacement per user at a time (a double-clicked "Generate new codes"; two first
        # factors enrolled at once): under READ COMMITTED the second one's UPDATE would not see the
        # set the first one inserts and would leave it live beside its own. Waiting on the user's
        # row, it retires that set too. (SQLite: the transaction already holds the write lock.)
        lock_user(user_id)
        # Retire (not delete) the old set: ids stay unique over time, so an id remembered in a stale
        # login state can never designate a new code, and the history stays for the audit trail.
        stamp = now or utcnow()
        db.session.execute(update(Credential).where(Credential.user_id == user_id, Credential.factor == name,
                                                    Credential.revoked_at.is_(None))
                           .values(revoked_at=stamp, secret_ciphertext=None, secret_key_id=None, lookup_key=None),
                           execution_options={"synchronize_session": False})
        rows = []
        for item in items:
            rows.append(Credential(user_id=user_id, factor=name, label=item.get("label", "") or "",
                                   public_json=dict(item.get("public") or {}),
                                   lookup_key=item.get("lookup_key"), counter=item.get("counter", 0),
                                   created_at=stamp))
        try:
            with db.session.begin_nested():
                db.session.add_all(rows)
                db.session.flush()
        except IntegrityError as exc:
            raise CredentialConflict(f"duplicate {name} lookup keys in the new set") from exc
        for row, item in zip(rows, items, strict=True):
            if item.get("secret") is not None:
                row.secret_key_id, row.secret_ciphertext = _keyring().seal(
                    bytes(item["secret"]), associated_data(name, user_id, row.id))
        if self._counts(name):
            recount_user(user_id, self._second_factor_names())
        db.session.flush()
        return [to_info(row) for row in rows]

    def _second_factor_names(self) -> list[str]:
        from idp.factors.registry import current_registry

        return [f.name for f in current_registry().all(kind=FactorKind.SECOND_FACTOR)]

    # --- read ----------------------------------------------------------------------------

    def list(self, user: UserLike, factor: str | None = None, *,
             include_revoked: bool = False) -> list[CredentialInfo]:
        """The user's credentials (this factor's when bound), oldest first."""
        name = factor or self.factor
        if not include_revoked:
            return [to_info(r) for r in _live_rows(_user_id(user)) if name is None or r.factor == name]
        rows = db.run(_credentials_of_user(live=False, of_factor=bool(name)),
                      {"user_id": _user_id(user), "of_factor": name}).all()
        return [to_info(r) for r in rows]

    def label_in_use(self, user: UserLike, label: str, *, factor: str | None = None,
                     excluding: int | None = None) -> bool:
        """Does another live credential of this user and factor carry `label` (ignoring case)?
        Read from the database, not the request's copy: a parallel request's new device counts."""
        wanted = display_text(label).casefold()
        return any(taken.casefold() == wanted for taken in self._labels(user, factor, excluding))

    def distinct_label(self, user: UserLike, label: str, *, factor: str | None = None,
                       excluding: int | None = None) -> str:
        """`label`, or `label (2)`, `label (3)`, ...: the first no other live credential of this user
        and factor carries (ignoring case), within the label column's length. The lists, the
        "new device" e-mail and the admins' alerts name a credential by its label: two phones that
        both call themselves "Pixel 8" must stay tellable apart."""
        taken = {text.casefold() for text in self._labels(user, factor, excluding)}
        candidate, number = label, 1
        while candidate.casefold() in taken:
            number += 1
            suffix = f" ({number})"
            candidate = label[:LABEL_MAX - len(suffix)].rstrip() + suffix
        return candidate

    def _labels(self, user: UserLike, factor: str | None, excluding: int | None) -> list[str]:
        stmt = select(Credential.label).where(Credential.user_id == _user_id(user), Credential.revoked_at.is_(None),
                                              Credential.label != "", *self._scope(factor))
        if excluding is not None:
            stmt = stmt.where(Credential.id != int(excluding))
        return list(db.session.scalars(stmt))

    def factors_held(self, user: UserLike) -> set[str]:
        """Names of the factors the user holds a live (non-revoked) credential of, so that callers
        ask each plugin's `is_configured_for` only about those (from the request's one read)."""
        return {row.factor for row in _live_rows(_user_id(user))}

    def factors_held_by(self, user_ids: Iterable[int]) -> dict[int, set[str]]:
        """For each of these users, the names of the factors they hold a live credential of (one
        statement for them all: the admin's CSV export reads a batch of users at a time, and a
        query per user was a 100,000-statement download). Users who hold none are absent."""
        ids = [int(i) for i in user_ids]
        held: dict[int, set[str]] = {}
        if not ids:
            return held
        rows = db.session.execute(select(Credential.user_id, Credential.factor).distinct()
                                  .where(Credential.user_id.in_(ids), Credential.revoked_at.is_(None)))
        for user_id, factor in rows:
            held.setdefault(user_id, set()).add(factor)
        return held

    def second_factors_held(self, user: UserLike) -> int:
        """The user's `second_factor_count` as this transaction sees it (its own removals included)."""
        return int(db.session.scalar(select(User.second_factor_count).where(User.id == _user_id(user))) or 0)

    def count(self, user: UserLike, factor: str | None = None, *, unused: bool = False) -> int:
        """Non-revoked credentials (with `unused`: not yet consumed), one indexed COUNT."""
        stmt = select(func.count()).select_from(Credential).where(
            Credential.user_id == _user_id(user), Credential.revoked_at.is_(None), *self._scope(factor))
        if unused:
            stmt = stmt.where(Credential.used_at.is_(None))
        return int(db.session.scalar(stmt) or 0)

    def get(self, user: UserLike, credential_id: int, *, include_revoked: bool = False) -> CredentialInfo | None:
        """One credential of this user (and factor, when bound), or None."""
        stmt = select(Credential).where(Credential.id == int(credential_id),
                                        Credential.user_id == _user_id(user), *self._scope())
        if not include_revoked:
            stmt = stmt.where(Credential.revoked_at.is_(None))
        row = db.session.scalars(stmt, execution_options=_FRESH).first()
        return to_info(row) if row else None

    def find(self, lookup_key: str, factor: str | None = None) -> CredentialInfo | None:
        """The live credential with this lookup key (WebAuthn credential id, recovery code HMAC); None
        also for a key no row can have (a NUL in it: a device's made-up id), without a query."""
        if not storable(lookup_key):
            return None
        row = db.session.scalars(select(Credential).where(
            Credential.factor == self._name(factor), Credential.lookup_key == lookup_key,
            Credential.revoked_at.is_(None)), execution_options=_FRESH).first()
        return to_info(row) if row else None

    def reveal(self, credential: CredentialInfo | int) -> bytes:
        """Decrypt a credential's secret. Raises `SecretUnavailable` (an operator problem) when the
        row has no secret, its key left the ring, or the ciphertext belongs to another row."""
        cid = _credential_id(credential)
        row = db.session.execute(select(Credential.factor, Credential.user_id, Credential.secret_key_id,
                                        Credential.secret_ciphertext)
                                 .where(Credential.id == cid, *self._scope())).first()
        if row is None or row.secret_ciphertext is None:
            raise SecretUnavailable(f"credential {cid} has no stored secret")
        try:
            return _keyring().open(row.secret_key_id, row.secret_ciphertext,
                                   associated_data(row.factor, row.user_id, cid))
        except SecretError as exc:
            raise SecretUnavailable(f"credential {cid}: {exc}") from exc

    def reveal_all(self, user: UserLike) -> list[tuple[CredentialInfo, bytes]]:
        """The user's live credentials of this factor with their secrets, in one query (the TOTP check
        tries each of the user's seeds; one round trip instead of one per credential)."""
        name = self._name(None)
        revealed = []
        for row in _live_rows(_user_id(user)):
            if row.factor != name or row.secret_ciphertext is None:
                continue
            try:
                secret = _keyring().open(row.secret_key_id, row.secret_ciphertext,
                                         associated_data(row.factor, row.user_id, row.id))
            except SecretError as exc:
                raise SecretUnavailable(f"credential {row.id}: {exc}") from exc
            revealed.append((to_info(row), secret))
        return revealed

    # --- pending material (enrolment secrets kept in the login state) ---------------------

    def seal_pending(self, user: UserLike, plaintext: bytes) -> str:
        """Seal material that must survive between `begin_enrolment` and `finish_enrolment` (a new TOTP
        seed) so that `Step.state`, stored in the login transaction, never holds it in clear."""
        return _keyring().seal_token(bytes(plaintext), self._pending_aad(user))

    def open_pending(self, user: UserLike, token: Any) -> bytes | None:
        """Open what `seal_pending` produced for this user and factor; None if it does not open."""
        try:
            return _keyring().open_token(token, self._pending_aad(user))
        except SecretError:
            return None

    def _pending_aad(self, user: UserLike) -> bytes:
        return f"pending|{self._name(None)}|{_user_id(user)}".encode()

    # --- exactly-once gates (one statement, committed at once) ---------------------------

    def advance_counter(self, credential_id: int, new_value: int, *, now: datetime | None = None) -> bool:
        """`UPDATE ... SET counter = :new WHERE id = :id AND counter < :new`, committed.

        True: this call moved the counter (the TOTP step / sign count is accepted). False: the
        counter was already there or beyond (replay, regression, a parallel request won).
        """
        return self._pass_gate("counter", {"id_": int(credential_id), "new": int(new_value), "now": now or utcnow()})

    def consume(self, credential_id: int, *, now: datetime | None = None, commit: bool = True) -> bool:
        """`UPDATE ... SET used_at = :now WHERE id = :id AND used_at IS NULL`, committed (or, with
        `commit=False`, with the caller's next commit, a rollback undoing it).

        True exactly once per credential (a recovery code); False afterwards or when revoked.
        """
        return self._pass_gate("used_at", {"id_": int(credential_id), "now": now or utcnow()}, commit=commit)

    def _pass_gate(self, column: str, values: dict, *, commit: bool = True) -> bool:
        """One conditional UPDATE, committed at once (or with the login step, see
        `gates_commit_with_step`, or with the caller's next commit): True when this call
        changed the row."""
        statement = _gate(column, of_factor=bool(self.factor))
        _forget_live_rows()
        passed = db.run(statement, dict(values, of_factor=self.factor)).first()
        if commit and not commits_with_step():
            db.session.commit()
        return passed is not None

    # --- other writes (caller commits) ---------------------------------------------------

    def touch(self, credential_id: int, *, now: datetime | None = None) -> None:
        """Record a use without a counter (authenticators whose sign count stays 0)."""
        _forget_live_rows()
        db.session.execute(update(Credential).where(Credential.id == int(credential_id), *self._scope())
                           .values(last_used_at=now or utcnow()),
                           execution_options={"synchronize_session": False})

    def update_public(self, credential_id: int, changes: Mapping[str, Any]) -> bool:
        """Merge `changes` into a live credential's public JSON (a flag a factor keeps on one
        credential, e.g. a security key suspended as a possible clone); False when it is not live."""
        _forget_live_rows()
        public = db.session.scalar(select(Credential.public_json).where(
            Credential.id == int(credential_id), Credential.revoked_at.is_(None), *self._scope()))
        if public is None:
            return False
        db.session.execute(update(Credential).where(Credential.id == int(credential_id))
                           .values(public_json={**dict(public), **dict(changes)}),
                           execution_options={"synchronize_session": False})
        return True

    def rename(self, user: UserLike, credential_id: int, label: str) -> bool:
        """Set a live credential's label (display text, as `create` stores it); False when it is not
        this user's (or not live)."""
        _forget_live_rows()
        result = db.session.execute(
            update(Credential).where(Credential.id == int(credential_id), Credential.user_id == _user_id(user),
                                     Credential.revoked_at.is_(None), *self._scope())
            .values(label=display_text(label)[:LABEL_MAX]), execution_options={"synchronize_session": False})
        return result.rowcount == 1

    def revoke(self, user: UserLike, credential_id: int, *, now: datetime | None = None) -> CredentialInfo | None:
        """Revoke a live credential of this user: keep the row (history), drop its secret and lookup key
        (so the same security key can be registered again). Returns the revoked credential, or None."""
        user_id = _user_id(user)
        _forget_live_rows()
        row = db.session.execute(
            update(Credential).where(Credential.id == int(credential_id), Credential.user_id == user_id,
                                     Credential.revoked_at.is_(None), *self._scope())
            .values(revoked_at=now or utcnow(), secret_ciphertext=None, secret_key_id=None, lookup_key=None)
            .returning(Credential), execution_options={"synchronize_session": False, **_FRESH}).scalar_one_or_none()
        if row is None:
            return None
        if self._counts(row.factor):
            self._bump(user_id, -1)
        elif self._kind_of(row.factor) is None:
            # A factor disabled or uninstalled since: whether its credentials were still counted
            # depends on when the counts were last repaired (`recount_second_factors`), so count
            # the user's live ones again rather than guess.
            recount_user(user_id, self._second_factor_names())
        return to_info(row)


# --- maintenance ---------------------------------------------------------------------------


def _live_second_factor_count(user_id_column, names: list[str]):
    return (select(func.count()).select_from(Credential)
            .where(Credential.user_id == user_id_column, Credential.revoked_at.is_(None),
                   Credential.factor.in_(names or ["-"]))
            .scalar_subquery())


def recount_user(user_id: int, second_factor_names: list[str]) -> None:
    """Set one user's `second_factor_count` from the credentials table (one statement)."""
    db.session.execute(update(User).where(User.id == user_id)
                       .values(second_factor_count=_live_second_factor_count(user_id, second_factor_names)),
                       execution_options={"synchronize_session": False})


def recount_second_factors(second_factor_names: list[str] | None = None) -> int:
    """Repair `second_factor_count` for every user whose count is off (one UPDATE, which writes
    only those rows: cheap to run when nothing changed); commits. Returns the rows repaired.

    Without names, uses the installed, enabled SECOND_FACTOR factors of the current app: after
    `factors.disabled` changed (`idp init` runs this), a disabled factor's credentials count
    no more, as the login no longer offers them.
    """
    if second_factor_names is None:
        from idp.factors.registry import current_registry

        second_factor_names = [f.name for f in current_registry().all(kind=FactorKind.SECOND_FACTOR)]
    live = _live_second_factor_count(User.id, second_factor_names)
    result = db.session.execute(update(User).where(User.second_factor_count != live).values(second_factor_count=live),
                                execution_options={"synchronize_session": False})
    db.session.commit()
    return result.rowcount


def unopenable_secrets() -> dict[str, int]:
    """The encryption key ids (security.encryption_keys) that sealed credentials' secrets and that
    the key ring cannot open, with how many secrets each sealed: a ring that lost a key, or gives
    its id to other key material. Every such credential (a TOTP seed) fails its user's login.
    Checked by `idp init` and `idp serve`, so that a ring changed too early is one line at start.

    One grouped read, and one row opened per key id (opening every secret would not scale with
    the users); a key id the ring holds opens all its rows unless a row was tampered with."""
    ring, lost = _keyring(), {}
    by_key = db.read_all(select(Credential.secret_key_id, func.min(Credential.id).label("sample"),
                                func.count().label("count"))
                         .where(Credential.secret_ciphertext.is_not(None)).group_by(Credential.secret_key_id), {})
    for key_id, sample, count in by_key:
        row = db.read_all(select(Credential.factor, Credential.user_id, Credential.secret_ciphertext)
                          .where(Credential.id == sample), {})[0]
        try:
            ring.open(key_id, row.secret_ciphertext, associated_data(row.factor, row.user_id, sample))
        except SecretError:
            lost[key_id] = int(count)
    return lost


def reseal_all(batch_size: int = 200, before_commit=None) -> int:
    """Re-encrypt every secret not sealed with the key ring's current key (`idp keys rotate-secrets`).

    Works in batches, each committed, with `before_commit(count)` called first (the caller's
    audit event for the batch, in its transaction); a row that does not open raises
    `SecretUnavailable` naming it (an operator must look: a key was dropped too early or the row
    was tampered with), the batches before it staying done. Returns how many rows were resealed.
    Safe to re-run: it only picks rows still on old keys.

    Each row is written back by a conditional UPDATE (still sealed with the key it was read with):
    a credential revoked meanwhile (its secret dropped, `revoke`) keeps no secret, where writing
    back what was read would have restored the seed the user had just removed.
    """
    ring = _keyring()
    done = 0
    _forget_live_rows()
    while True:
        rows = db.session.execute(
            select(Credential.id, Credential.factor, Credential.user_id, Credential.secret_key_id,
                   Credential.secret_ciphertext)
            .where(Credential.secret_ciphertext.is_not(None), Credential.secret_key_id != ring.current_id)
            .order_by(Credential.id).limit(batch_size)).all()
        if not rows:
            return done
        resealed = 0
        for row in rows:
            aad = associated_data(row.factor, row.user_id, row.id)
            try:
                plaintext = ring.open(row.secret_key_id, row.secret_ciphertext, aad)
            except SecretError as exc:
                db.session.rollback()
                raise SecretUnavailable(f"credential {row.id}: {exc}") from exc
            key_id, blob = ring.seal(plaintext, aad)
            resealed += db.session.execute(
                update(Credential).where(Credential.id == row.id, Credential.secret_key_id == row.secret_key_id,
                                         Credential.secret_ciphertext.is_not(None))
                .values(secret_key_id=key_id, secret_ciphertext=blob),
                execution_options={"synchronize_session": False}).rowcount
        if before_commit is not None:
            before_commit(resealed)
        db.session.commit()
        done += resealed
