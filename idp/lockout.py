"""Growing lockouts after failed guesses, shared across processes (Redis when configured, else the database).

`check(keys)` says how long the caller must still wait; `fail(keys)` counts a failure
and, past the threshold, locks each key for a delay that doubles with every further
failure (capped); `succeed(keys)` clears them. Keys are strings such as
"factor:user:42", "factor:ip:203.0.113.9" or "password:account:<sha256 of the e-mail>";
the prefix picks the thresholds (`ratelimit.factor_*` or `ratelimit.password_*`).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app, g
from redis.exceptions import RedisError
from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from idp.db import db, utcnow
from idp.models import FailureCounter

log = logging.getLogger(__name__)
_SEEN_CLEAR = "idp_lockout_seen_clear"


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


def _delay_for(failures: int, kind: str = "factor") -> int:
    threshold, base, cap = _policy(kind)
    if failures < threshold:
        return 0
    return min(cap, base * 2 ** (failures - threshold))


def _redis():
    return current_app.extensions.get("idp.redis")


def _on_redis(operation, keys: list[str]):
    """Run `operation(redis, keys)` on Redis when configured; None when it is not (or failed:
    the counters then live in the database until Redis answers again, rather than a 500)."""
    redis = _redis()
    if redis is None:
        return None
    try:
        return operation(redis, keys)
    except RedisError as exc:
        log.warning("lockout counters fall back to the database: Redis failed: %s", exc)
        return None


def _check_redis(redis, keys: list[str]) -> int:
    ttls = [redis.pttl(f"idp:lock:{key}") for key in keys]
    return max([0] + [(t + 999) // 1000 for t in ttls if t and t > 0])


def _fail_redis(redis, keys: list[str]) -> int:
    longest = 0
    for key in keys:
        failures = redis.incr(f"idp:fail:{key}")
        redis.expire(f"idp:fail:{key}", 24 * 3600)
        delay = _delay_for(failures, _kind(key))
        if delay:
            redis.set(f"idp:lock:{key}", 1, ex=delay)
            longest = max(longest, delay)
    return longest


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
_COUNT_FAILURE: dict[str, object] = {}


def _count_failure_statement(dialect: str):
    """INSERT ... ON CONFLICT DO UPDATE failures + 1 RETURNING failures, built once per dialect."""
    if dialect not in _COUNT_FAILURE:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(_COUNTERS).values(key=bindparam("key_"), failures=1, updated_at=bindparam("now"))
        _COUNT_FAILURE[dialect] = statement.on_conflict_do_update(
            index_elements=[_COUNTERS.c.key],
            set_={"failures": _COUNTERS.c.failures + 1, "updated_at": statement.excluded.updated_at},
        ).returning(_COUNTERS.c.failures)
    return _COUNT_FAILURE[dialect]


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
    count_failure = _count_failure_statement(db.engine.dialect.name)
    for key in keys:
        failures = db.run(count_failure, {"key_": key, "now": now}).scalar()
        delay = _delay_for(failures, _kind(key))
        if delay:
            db.run(_LOCK, {"key_": key, "until": now + timedelta(seconds=delay)})
            longest = max(longest, delay)
    if commit:
        db.session.commit()
    return longest


def succeed(keys: list[str]) -> None:
    """Clear the keys' failures; on the database this commits with the caller's next commit."""
    if _on_redis(_succeed_redis, keys):
        return
    # Keys `check` found without a counter in this request are skipped: most logins have no
    # failures to clear. (A failure counted concurrently in between stays: stricter, not looser.)
    keys = [key for key in keys if key not in g.get(_SEEN_CLEAR, ())]
    if keys:
        db.run(_keyed(_DELETE_COUNTERS, len(keys)), _key_values(keys))
