"""The idle timeout of signed-in sessions (`session.idle_timeout`, Keycloak's "SSO Session Idle").

A session ends `session.lifetime` after its login, whatever happens (its row's `expires_at`),
and, when `session.idle_timeout` is set (seconds; 0, the default, is off), as soon as it has
gone unused that long: then it is treated exactly as an expired one, everywhere a session's
liveness is asked (idp.login.session for this browser's; idp.sessions, idp.users,
idp.oidc.backchannel for the SQL that reads or ends live sessions; idp.maintenance purges it).
The setting is read at each use, never written into the row: a change applies to every session
at once.

"Used" is recorded in the row's `last_used_at` (written at the login, then by
idp.login.session whenever a request relies on the session), coarsely: only once the stored
time is `stamp_interval` old (a minute, or a tenth of the idle timeout when that is shorter), so
that a busy session does not write on every request. The stored time is therefore up to that
interval behind the true last use, and the timeout counts from the stored time: a session ends
at most that much early, never late. With the timeout off the stamp is still kept, once a
minute: "Where you're signed in" shows it, and a timeout switched on later judges sessions by
their real last use.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from idp.models import UserSession

# The stamp's coarseness without an idle timeout, and its most with one.
STAMP_INTERVAL = 60


def idle_timeout() -> int:
    """`session.idle_timeout` in seconds, 0 when off (or outside an app, as for a bare script)."""
    from flask import current_app, has_app_context

    if has_app_context() and "idp.settings" in current_app.extensions:
        return int(current_app.extensions["idp.settings"].get("session.idle_timeout") or 0)
    return 0


def stamp_interval(timeout: int | None = None) -> int:
    """How old the stored last use must be before it is written again (module docstring)."""
    timeout = idle_timeout() if timeout is None else timeout
    return min(STAMP_INTERVAL, timeout // 10) if timeout else STAMP_INTERVAL


def idle_since(now: datetime) -> datetime | None:
    """The last use before which a session counts as idle-expired at `now`, or None when off."""
    timeout = idle_timeout()
    return now - timedelta(seconds=timeout) if timeout else None


def is_idle(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a session last used at `last_used_at` has been idle too long at `now`."""
    cutoff = idle_since(now)
    return cutoff is not None and last_used_at is not None and last_used_at <= cutoff


def unended_where(now: datetime) -> tuple:
    """The SQL conditions of a session that has not ended yet at `now`: neither ended nor expired,
    idle or not. What ends sessions (a sign-out everywhere, a withdrawn factor, one session ended
    on purpose) revokes idle ones too: the timeout is read at each use, so a session left idle but
    unrevoked would be live again as soon as the timeout were raised or switched off."""
    return (UserSession.revoked_at.is_(None), UserSession.expires_at > now)


def live_where(now: datetime) -> tuple:
    """The SQL conditions of a live session at `now`: neither ended, nor expired, nor idle too long."""
    conditions = unended_where(now)
    cutoff = idle_since(now)
    return conditions if cutoff is None else (*conditions, UserSession.last_used_at > cutoff)
