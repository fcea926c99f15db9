"""Growing lockouts after failed guesses, shared across processes (Redis when configured, else the database).

`check(keys)` says how long the caller must still wait; `fail(keys)` counts a failure
and, past the threshold, locks each key for a delay that doubles with every further
failure (capped); `succeed(keys)` clears them. `reserve(key)` is check and fail in one
atomic step, before a check that cannot hold a lock (argon2id) or that parallel guesses would
all pass before any failure is counted: the guess counts as a failure until `succeed` clears
the key or `release` takes that one guess back, so guesses posted at once cannot exceed the
limit.
Keys are strings such as "factor:user:42", "factor:ip:203.0.113.9" or
"password:account:<sha256 of the e-mail>" (`PasswordGuess`); the prefix picks the
thresholds (`ratelimit.factor_*` or `ratelimit.password_*`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, g
from sqlalchemy import bindparam, case, delete, literal_column, null, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from idp.db import db, utcnow
from idp.models import FailureCounter

log = logging.getLogger(__name__)
_SEEN_CLEAR = "idp_lockout_seen_clear"
# The keys whose lockout this request's own `reserve` started: a `release` of that guess lifts it.
_LOCKED_BY_RESERVE = "idp_lockout_locked_by_reserve"


def _policy(kind: str):
    """(failures before the first lockout, first lockout seconds, longest lockout) for `kind`:
    factor, password (per user or account) | factor_ip, password_ip (per address)."""
    settings = current_app.extensions["idp.settings"]
    return (int(settings.get(f"ratelimit.{kind}_failures_before_lockout", 5)),
            int(settings.get(f"ratelimit.{kind}_lockout_seconds", 30)),
            int(settings.get(f"ratelimit.{kind}_lockout_max_seconds", 3600)))


def _kind(key: str) -> str:
    """"password:account:…" -> password, "factor:ip:…" -> factor_ip: addresses get their own (higher) limits."""
    family, scope = (key.split(":") + ["", ""])[:2]
    family = family if family in ("password", "factor") else "factor"
    return f"{family}_ip" if scope == "ip" else family


def _lockout_seconds(past_threshold: int, first: int, longest: int) -> int:
    """The lockout started by the failure `past_threshold` failures after the first one that
    locks: the first lockout, doubled with each further failure, at most the longest. (The Redis
    script `_RESERVE_SCRIPT` says the same in Lua.)"""
    return min(longest, first * 2 ** past_threshold)


def _delay_for(failures: int, kind: str = "factor") -> int:
    threshold, first, longest = _policy(kind)
    if failures < threshold:
        return 0
    return _lockout_seconds(failures - threshold, first, longest)


def _redis():
    return current_app.extensions.get("idp.redis")


def _on_redis(operation, keys: list[str]):
    """Run `operation(redis, keys)` on Redis when configured; None when it is not (or failed:
    the counters then live in the database until Redis answers again, rather than a 500)."""
    redis = _redis()
    if redis is None:
        return None
    from redis.exceptions import RedisError  # here, not at the top: SQLite-only set-ups never load redis

    try:
        return operation(redis, keys)
    except RedisError as exc:
        log.warning("lockout counters fall back to the database: Redis failed: %s", exc)
        return None


# How long a key's failures are kept on Redis after its last failure (on the database,
# `idp maintenance` drops a counter its failures left alone for a day).
_FAILURES_TTL = 24 * 3600


def _check_redis(redis, keys: list[str]) -> int:
    ttls = [redis.pttl(f"idp:lock:{key}") for key in keys]
    return max([0] + [(t + 999) // 1000 for t in ttls if t and t > 0])


def _fail_redis(redis, keys: list[str]) -> int:
    longest = 0
    for key in keys:
        failures = redis.incr(f"idp:fail:{key}")
        redis.expire(f"idp:fail:{key}", _FAILURES_TTL)
        delay = _delay_for(failures, _kind(key))
        if delay:
            redis.set(f"idp:lock:{key}", 1, ex=delay)
            longest = max(longest, delay)
    return longest


# reserve() on Redis: refuse while locked, else count the guess and, from the threshold on,
# lock at once -- one script, so that no other guess runs between the count and the lock.
# KEYS: lock, failures; ARGV: threshold, first lockout, longest lockout (seconds), failures' TTL,
# 1 to start the failures' TTL again (else only a new key's is set: `reserve`'s `touch`).
# Returns the lockout's milliseconds still to wait when refused, -1 when admitted and locking,
# else 0.
_RESERVE_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then return ttl end
local failures = redis.call('INCR', KEYS[2])
if failures == 1 or ARGV[5] == '1' then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4])) end
local threshold = tonumber(ARGV[1])
if failures >= threshold then
  local delay = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (failures - threshold))
  redis.call('SET', KEYS[1], 1, 'EX', math.floor(delay))
  return -1
end
return 0
"""


def _reserve_redis(redis, keys: list[str], touch: bool = True) -> int:
    [key] = keys
    threshold, base, cap = _policy(_kind(key))
    waited_ms = int(redis.eval(_RESERVE_SCRIPT, 2, f"idp:lock:{key}", f"idp:fail:{key}", threshold, base, cap,
                               _FAILURES_TTL, 1 if touch else 0))
    if waited_ms == -1:  # admitted, and its count started a lockout
        g.setdefault(_LOCKED_BY_RESERVE, set()).add(key)
        return 0
    return (waited_ms + 999) // 1000


# release() on Redis: one failure fewer, never below none (a key expired meanwhile stays gone).
_RELEASE_SCRIPT = """
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


def _release_redis(redis, keys: list[str]) -> bool:
    [key] = keys
    redis.eval(_RELEASE_SCRIPT, 1, f"idp:fail:{key}")
    if key in g.get(_LOCKED_BY_RESERVE, ()):
        redis.delete(f"idp:lock:{key}")
    return True


def _touch_redis(redis, keys: list[str]) -> bool:
    [key] = keys
    redis.expire(f"idp:fail:{key}", _FAILURES_TTL)
    return True


def _succeed_redis(redis, keys: list[str]) -> bool:
    redis.delete(*[f"idp:fail:{k}" for k in keys], *[f"idp:lock:{k}" for k in keys])
    return True


_COUNTERS = FailureCounter.__table__
# Statements over a few keys (two per guess: the account or user, and the address), built once
# per number of keys: `key IN (:k0, :k1, ...)`.
_SELECT_COUNTERS, _DELETE_COUNTERS = "select", "delete"
_BY_KEYS: dict[tuple[str, int], object] = {}


def _keyed(kind: str, count: int):
    statement = _BY_KEYS.get((kind, count))
    if statement is None:
        matching = _COUNTERS.c.key.in_([bindparam(f"k{i}") for i in range(count)])
        statement = (select(*_COUNTERS.c).where(matching) if kind == _SELECT_COUNTERS
                     else delete(_COUNTERS).where(matching))
        _BY_KEYS[(kind, count)] = statement
    return statement


def _key_values(keys: list[str]) -> dict[str, str]:
    return {f"k{i}": key for i, key in enumerate(keys)}


def check(keys: list[str]) -> int:
    """Seconds to wait before another guess is allowed (0: go ahead)."""
    waited = _on_redis(_check_redis, keys)
    if waited is not None:
        return waited
    now = utcnow()
    rows = db.read_all(_keyed(_SELECT_COUNTERS, len(keys)), _key_values(keys))
    # Remembered for this request: `succeed` need not delete counters this read found absent.
    g.setdefault(_SEEN_CLEAR, set()).update(set(keys) - {r.key for r in rows})
    waits = [int((r.locked_until - now).total_seconds()) + 1 for r in rows if r.locked_until and r.locked_until > now]
    return max([0] + waits)


_LOCK = (_COUNTERS.update().where(_COUNTERS.c.key == bindparam("key_"))
         .values(locked_until=bindparam("until")))
_UNLOCK = _COUNTERS.update().where(_COUNTERS.c.key == bindparam("key_")).values(locked_until=null())
_COUNT_FAILURES: dict[tuple[str, int], object] = {}


def _count_failures_statement(dialect: str, count: int):
    """INSERT ... ON CONFLICT DO UPDATE failures + 1 for `count` keys at once (k0, k1...): one
    statement, one round trip, RETURNING each key's count (a second factor's wrong code counts
    the user's and the address's), built once per shape. Rows are written in the keys' order."""
    built = _COUNT_FAILURES.get((dialect, count))
    if built is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(_COUNTERS).values([{"key": bindparam(f"k{i}"), "failures": 1, "updated_at": bindparam("now")}
                                              for i in range(count)])
        built = _COUNT_FAILURES[(dialect, count)] = _counted_on_conflict(statement)
    return built


def _counted_on_conflict(statement, *, unless_locked_at=None, locked_until=None, touch: bool = True):
    """A counters INSERT (one failure per new key) made the count's upsert: a key already counted
    gets failures + 1, RETURNING each key's count; with `unless_locked_at` (the time, a bind
    parameter of the statement's), only while no lockout is in force at it; with `locked_until`
    (an expression of the row's failures), the lockout that count starts set in the same update.
    `touch=False`: a key already counted keeps its `updated_at` (`reserve`'s `touch`)."""
    columns = _COUNTERS.c
    unlocked = (or_(columns.locked_until.is_(None), columns.locked_until <= unless_locked_at)
                if unless_locked_at is not None else None)
    counted = {"failures": columns.failures + 1}
    if touch:
        counted["updated_at"] = statement.excluded.updated_at
    if locked_until is not None:
        counted["locked_until"] = locked_until
    return statement.on_conflict_do_update(index_elements=[columns.key], set_=counted, where=unlocked
                                           ).returning(columns.key, columns.failures)


def fail(keys: list[str], *, commit: bool = True) -> int:
    """Count one failure on each key; returns the longest lockout now in force (seconds).

    On the database the counts commit at once, or with the caller's next commit when
    `commit=False` (the caller then commits whatever else happens).
    """
    counted = _on_redis(_fail_redis, keys)
    g.setdefault(_SEEN_CLEAR, set()).difference_update(keys)
    if counted is not None:
        return counted
    longest = 0
    now = utcnow()
    keys = list(dict.fromkeys(keys))  # (one row a statement may change once)
    counted = db.run(_count_failures_statement(db.engine.dialect.name, len(keys)),
                     dict(_key_values(keys), now=now)).all() if keys else []
    for key, failures in counted:
        delay = _delay_for(failures, _kind(key))
        if delay:
            db.run(_LOCK, {"key_": key, "until": now + timedelta(seconds=delay)})
            longest = max(longest, delay)
    if commit:
        db.session.commit()
    return longest


def _lockout_ends(first: int, longest: int, now) -> list:
    """When the lockout started by each failure from the threshold on would end (`first` and
    `longest` lockout seconds, `_policy`): the first lockout's end, then each doubling's, the last
    one the longest lockout's (every later failure's)."""
    ends = []
    while True:
        seconds = _lockout_seconds(len(ends), first, longest)
        ends.append(now + timedelta(seconds=seconds))
        if seconds >= longest:
            return ends


_RESERVATIONS: dict[tuple[str, int, bool, bool], object] = {}


def _reservation_statement(dialect: str, steps: int, *, unless_address_locked: bool, touch: bool = True):
    """`reserve`'s count of one guess at the key :k0 as one upsert: nothing counted, and no row
    returned, while the key is locked out; else failures + 1 RETURNING the count, and the
    lockout this count starts, if it reaches the threshold, set in the same statement (no other
    guess can come between the count and the lock, and no second round trip). The lockout's
    end for each count is computed by the caller (`_reservation_values`): a CASE over the
    counts from :threshold on, `steps` ends (`_lockout_ends`), the last for every later count.
    `unless_address_locked`: counted only while the key :address is not locked out either (a
    password guess's address check and its account's reservation in one statement: `admit`).
    `touch`: as `reserve`'s. Built once per dialect, number of ends and shape."""
    key = (dialect, steps, unless_address_locked, touch)
    built = _RESERVATIONS.get(key)
    if built is None:
        columns = _COUNTERS.c
        now = bindparam("now", type_=columns.updated_at.type)
        ends = [bindparam(f"end_{i}", type_=columns.locked_until.type) for i in range(steps)]
        counts = [bindparam(f"count_{i}", type_=columns.failures.type) for i in range(steps - 1)]
        after = columns.failures + 1
        locked_until = case((after < bindparam("threshold", type_=columns.failures.type), null()),
                            *[(after == count, end) for count, end in zip(counts, ends[:-1], strict=True)],
                            else_=ends[-1])
        first = bindparam("first_lock", type_=columns.locked_until.type)  # a threshold of 1 locks at once
        guess = select(bindparam("k0", type_=columns.key.type), literal_column("1"), now, first)
        if unless_address_locked:
            address_locked = select(columns.key).where(
                columns.key == bindparam("address", type_=columns.key.type), columns.locked_until > now).exists()
            # (SQLite reads ON CONFLICT after a SELECT as a join's unless the SELECT has a WHERE: it has.)
            guess = guess.where(~address_locked)
        else:
            guess = guess.where(literal_column("1") == literal_column("1"))  # (the same SQLite rule)
        insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(_COUNTERS).from_select(
            ["key", "failures", "updated_at", "locked_until"], guess)
        built = _RESERVATIONS[key] = _counted_on_conflict(insert, unless_locked_at=now, locked_until=locked_until,
                                                          touch=touch)
    return built


def _reservation_values(key: str, now) -> tuple[int, dict]:
    """The number of lockout steps and the values of `_reservation_statement` for `key`."""
    threshold, first, longest = _policy(_kind(key))
    ends = _lockout_ends(first, longest, now)
    values = {"k0": key, "now": now, "threshold": threshold, "first_lock": ends[0] if threshold <= 1 else None}
    values.update({f"end_{i}": end for i, end in enumerate(ends)})
    values.update({f"count_{i}": threshold + i for i in range(len(ends) - 1)})
    return len(ends), values


def _reserved(key: str, counted) -> bool:
    """After a reservation's upsert at `key`: whether it counted the guess (None: a lockout held).
    A count that started a lockout is remembered: a `release` of this guess lifts it."""
    if counted is None:
        return False
    if _delay_for(counted.failures, _kind(key)):
        g.setdefault(_LOCKED_BY_RESERVE, set()).add(key)
    return True


def reserve(key: str, *, touch: bool = True) -> int:
    """Count a guess against `key` before it is checked: 0 when it may go ahead, counted as a
    failure until `succeed([key])` takes it back; else the seconds a lockout still holds
    (nothing counted).

    For a check too slow to hold a lock through (argon2id: on SQLite every transaction holds
    the write lock). With `check` before and `fail` after it, guesses posted at once all pass
    the check before any failure is counted (40 parallel wrong passwords at a limit of 10 got
    29 checked); here each guess is counted by one atomic statement, which also sets the
    lockout when its count reaches the threshold, so the limit holds however many arrive
    together. On the database the count commits with the caller's next commit, which must come
    before the slow check (the row stays locked until then).

    `touch=False`: the key's failures are not kept longer for this count (its `updated_at` on the
    database, its time to live on Redis, stay as they were unless the key is new): for a count
    that a right answer takes back (`release`) without clearing the key's others, which must
    age as if it had not come (`PasswordGuess`: the address's); its failure then keeps them
    (`touch`).
    """
    waited = _on_redis(lambda redis, keys: _reserve_redis(redis, keys, touch), [key])
    g.setdefault(_SEEN_CLEAR, set()).discard(key)
    if waited is not None:
        return waited
    steps, values = _reservation_values(key, utcnow())
    counted = db.run(_reservation_statement(db.engine.dialect.name, steps, unless_address_locked=False,
                                            touch=touch), values).first()
    return 0 if _reserved(key, counted) else check([key]) or 1


def _admit_on_database(account: str, address: str) -> int:
    """`PasswordGuess.admit` on the database: `check([address]) or reserve(account)` as one
    statement (`_reservation_statement`), then the address's own reservation. The login form
    calls it before its request has begun a transaction: each statement then runs alone and
    commits at once (no BEGIN and COMMIT round trips on PostgreSQL; on SQLite the write lock for
    that one statement, and the address's row, which every guess from it counts on, is never
    held beyond it), which is what the reservations need before the hash anyway. Called inside
    the session's transaction (pages that read before the guess), they run there, and the
    caller commits them before the hash, as for `reserve`. When the first counts nothing, one
    of the two is locked: the waits are then read as those calls would have (the address's
    first). When the address's count is refused (guesses at other accounts locked it in
    between), the account's is taken back."""
    g.setdefault(_SEEN_CLEAR, set()).discard(account)
    steps, values = _reservation_values(account, utcnow())
    values["address"] = address
    statement = _reservation_statement(db.engine.dialect.name, steps, unless_address_locked=True)
    if not _reserved(account, _first_now(statement, values)):
        return check([address]) or check([account]) or 1
    steps, values = _reservation_values(address, utcnow())
    # Committed without waiting for the disk (PostgreSQL): a count a crash loses is one guess
    # fewer on the address's much higher limit, and every login would wait for that disk write.
    # Not `touch`ed: see `PasswordGuess.admit`.
    statement = _reservation_statement(db.engine.dialect.name, steps, unless_address_locked=False, touch=False)
    if _reserved(address, _first_now(statement, values, synchronous=False)):
        return 0
    _release_now(account)
    return check([address]) or 1


def _first_now(statement, values: dict, *, synchronous: bool = True):
    """`statement`'s first row: in the session's transaction when one is open, else alone,
    committed at once (`synchronous` as for `db.first_alone`)."""
    if db.in_transaction():
        return db.run(statement, values).first()
    return db.first_alone(statement, values, synchronous=synchronous)


_RELEASE = (_COUNTERS.update().where(_COUNTERS.c.key == bindparam("key_"), _COUNTERS.c.failures > 0)
            .values(failures=_COUNTERS.c.failures - 1))


def release(key: str) -> None:
    """Take back one guess `reserve` counted, and nothing more: for a guess that proved right
    where a right guess must not clear the history (an address's guesses at many secrets, one
    of them its own: the others' count stays). A lockout that this guess's own reservation
    started (it was the one reaching the threshold) goes with it: a right answer after
    threshold - 1 wrong ones must not lock the next one out. A lockout another guess started
    stays. On the database this commits with the caller's next commit."""
    _release(key, db.run)


def _release_now(key: str) -> None:
    """`release`, committed at once when the session has no transaction open (a guess refused
    before its request began one, or an address's count taken back as its login goes on: the
    address's row, which every guess from it counts on, is not held through the rest of the
    request); in the session's transaction, with the caller's next commit, otherwise."""
    _release(key, _write_now)


def _write_now(statement, values: dict) -> None:
    """A counter's write in the session's transaction when one is open (committed with the
    caller's next commit), else alone, committed at once without waiting for the disk."""
    if db.in_transaction():
        db.run(statement, values)
    else:
        db.execute_alone(statement, values, synchronous=False)


_TOUCH = (_COUNTERS.update().where(_COUNTERS.c.key == bindparam("key_"))
          .values(updated_at=bindparam("now", type_=_COUNTERS.c.updated_at.type)))


def keep(key: str) -> None:
    """A guess counted by `reserve(key, touch=False)` proved wrong: the key's failures are kept
    from now on, as a failure counted with `touch` would keep them. Written alone when no
    transaction is open, else with the caller's next commit (as `_release_now`)."""
    if _on_redis(_touch_redis, [key]):
        return
    _write_now(_TOUCH, {"key_": key, "now": utcnow()})


def _release(key: str, run) -> None:
    if _on_redis(_release_redis, [key]):
        return
    run(_RELEASE, {"key_": key})
    if key in g.get(_LOCKED_BY_RESERVE, ()):
        run(_UNLOCK, {"key_": key})


@dataclass(frozen=True)
class PasswordGuess:
    """The counters of one password guess, wherever it is typed (the login form, push recovery
    by password): one budget per account for every door.

    The account is the submitted address, hashed, known or not, so that an unknown address
    locks exactly like a real one (nothing tells them apart); the address is the client's.
    """

    account: str
    address: str

    @classmethod
    def of(cls, submitted_email: str, remote_addr: str | None) -> "PasswordGuess":
        from idp.security.tokens import sha256_hex

        from idp.security.guess_keys import address_key

        return cls(f"password:account:{sha256_hex((submitted_email or '').strip().lower())}",
                   f"password:ip:{address_key(remote_addr)}")

    def admit(self) -> int:
        """0 when the guess may be checked, else the seconds to wait. The guess is reserved
        (counted as a failure before the check: `reserve`) against the account and against the
        address, with its higher limit: guesses at many accounts posted at once from one
        address (password spraying) cannot all pass a check that none of them has failed yet,
        any more than guesses at one account can. A refusal counts nothing."""
        if _redis() is None:
            return _admit_on_database(self.account, self.address)
        # (Redis, its own fallback to the database included.) Not `touch`ed: a right password
        # takes this count back, and must not keep the address's earlier failures alive either
        # (people sharing an address sign in every day); `failed` keeps them.
        wait = reserve(self.address, touch=False)
        if wait:
            return wait
        wait = reserve(self.account)
        if wait:
            _release_now(self.address)
        return wait

    def failed(self, *, commit: bool = True) -> int:
        """A wrong guess: its failures were counted when it was admitted; the address's are kept
        from now on (its count was reserved without `touch`: `admit`). Returns the seconds a
        lockout now holds the account (0: none), which this guess (or one admitted beside it)
        started: it was admitted, so none held when it came; or the address's, when this
        guess's own count started it (other accounts' guesses from that address lock it too).
        The address's row is written alone when no transaction is open (as `succeeded` does);
        `commit=False`: otherwise with the caller's next commit (the audit event of the
        refusal)."""
        keep(self.address)
        started_here = self.address in g.get(_LOCKED_BY_RESERVE, ())
        locked = max(check([self.address]) if started_here else 0, check([self.account]))
        if commit:
            db.session.commit()
        return locked

    def succeeded(self) -> None:
        """Take back the account's reserved failure and clear its history; take back the
        address's one reserved failure only (one working account of an attacker's must not wipe
        guesses made at others). The address's, committed at once when no transaction is open:
        every guess from that address counts on its row."""
        _release_now(self.address)  # (first: `succeed` begins the transaction it is written in)
        succeed([self.account])


def succeed(keys: list[str]) -> None:
    """Clear the keys' failures; on the database this commits with the caller's next commit."""
    if _on_redis(_succeed_redis, keys):
        return
    # Keys `check` found without a counter in this request are skipped: most logins have no
    # failures to clear. (A failure counted concurrently in between stays: stricter, not looser.)
    keys = [key for key in keys if key not in g.get(_SEEN_CLEAR, ())]
    if keys:
        db.write_later(_keyed(_DELETE_COUNTERS, len(keys)), _key_values(keys))
