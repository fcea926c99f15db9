"""The ranges the core's numeric and enumerated settings must fall in, checked at start-up.

idp.config checks that a value has the right type; this module checks that it makes sense.
A negative token lifetime, a zero lockout threshold or an unparsable rate limit used to
start a server that then misbehaved quietly (tokens born expired, every login locked, the
login forms' rate limit dropped) or answered 500s. Each bound below is a `ConfigError`
naming the setting and its variable instead. Factor plugins check their own sections
(`FactorMisconfigured`, raised as the registry builds them).
"""
from __future__ import annotations

import re
from typing import Any, Callable

DAY = 86400
# The shortest audit retention: the admins' security alerts read 30 days of events
# (idp.admin.queries.ALERT_DAYS).
AUDIT_MIN_RETENTION_DAYS = 30
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,64}$")

# (dotted name, lowest, highest): whole numbers (or numbers, for the cache's seconds).
BOUNDS: tuple[tuple[str, float, float], ...] = (
    # argon2's own limits (below them the library raises deep inside create_app); production
    # asks more, see production_problems.
    ("security.argon2_time_cost", 1, 100),
    ("security.argon2_parallelism", 1, 64),
    ("security.argon2_memory_cost", 8, 4 * 1024 * 1024),
    ("server.database_pool_size", 1, 1000),
    ("server.database_max_overflow", 0, 1000),
    ("server.database_pool_timeout", 1, 600),
    ("session.lifetime", 60, 365 * DAY),
    ("login.transaction_ttl", 60, DAY),
    ("login.recent_login", 10, DAY),
    # A reset link is a password in a mailbox: minutes to hours, not days.
    ("password_reset.link_ttl", 300, DAY),
    ("password_reset.per_hour", 1, 100),
    # An invitation waits for someone who has no password yet to read their mail: hours to weeks.
    ("password_reset.invite_ttl", 3600, 30 * DAY),
    # RFC 6749 4.1.2 recommends ten minutes at most; ours live a minute at most (the grant caps it).
    ("tokens.authorization_code_ttl", 1, 60),
    ("tokens.access_token_ttl", 60, 7 * DAY),
    ("tokens.id_token_ttl", 60, 7 * DAY),
    ("tokens.refresh_token_ttl", 60, 3650 * DAY),
    ("tokens.refresh_token_max_lifetime", 0, 3650 * DAY),
    ("ops.audit_retention_days", 0, 36500),  # (0, or at least AUDIT_MIN_RETENTION_DAYS: see problems)
    ("tokens.retired_key_grace", 0, 365 * DAY),
    ("tokens.key_publish_delay", 0, 30 * DAY),
    ("tokens.client_cache_ttl", 0, 3600),
    # RFC 8628: long enough to walk to a computer and sign in with a second factor; the user code
    # is guessable only while it lives (34 bits, guesses limited per address).
    ("tokens.device_code_ttl", 60, 1800),
    ("tokens.device_poll_interval", 1, 60),
    ("admin.page_size", 1, 1000),
    ("mail.port", 1, 65535),
    ("ops.cached_documents_ttl", 0, 3600),
)

# Each lockout family: failures before the first lockout, the first lockout's seconds, the longest.
LOCKOUTS = ("password", "password_ip", "factor", "factor_ip")

ENUMERATED: dict[str, tuple[str, ...]] = {
    "tokens.default_id_token_alg": ("ES256", "RS256"),  # idp.oidc.keys.SUPPORTED_ALGS
    "tokens.client_assertion_audience": ("issuer_or_endpoint", "issuer"),  # idp.oidc.client_assertion
}

# OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB with t=2, or an equivalent row of its
# table (47104/1, 12288/3, 9216/4, 7168/5): at least 7 MiB, and memory x passes at least 35,840 KiB.
OWASP_MIN_MEMORY_KIB = 7168
OWASP_MIN_MEMORY_PASSES = 35840


def problems(get: Callable[[str], Any], named: Callable[[str], str]) -> list[str]:
    """What is out of range, one sentence each. `get(dotted)` reads a setting, `named(dotted)`
    spells it as an operator set it (`tokens.access_token_ttl (IDP_TOKENS__ACCESS_TOKEN_TTL)`)."""
    found = []
    for dotted, low, high in BOUNDS:
        value = get(dotted)
        if value is not None and not low <= value <= high:
            found.append(f"{named(dotted)} must be between {low} and {high}, not {value!r}")
    for family in LOCKOUTS:
        found.extend(_lockout_problems(get, named, f"ratelimit.{family}"))
    for dotted, allowed in ENUMERATED.items():
        value = get(dotted)
        if value is not None and value not in allowed:  # JOSE names are case-sensitive
            found.append(f"{named(dotted)} must be one of {', '.join(allowed)}, not {value!r}")
    retention = get("ops.audit_retention_days")
    if retention is not None and 0 < retention < AUDIT_MIN_RETENTION_DAYS:
        found.append(f"{named('ops.audit_retention_days')} must be 0 (keep every event) or at least "
                     f"{AUDIT_MIN_RETENTION_DAYS} (the admins' security alerts look back that far), not {retention!r}")
    idle, lifetime = get("session.idle_timeout"), get("session.lifetime")
    if idle is not None and idle != 0 and not 60 <= idle <= (lifetime or 0):
        # Below a minute a reader of the page would be signed out; beyond the lifetime it never acts.
        found.append(f"{named('session.idle_timeout')} must be 0 (off) or between 60 and "
                     f"{named('session.lifetime')} ({lifetime}), not {idle!r}")
    cookie = get("session.cookie_name")
    if cookie is not None and not _COOKIE_NAME.fullmatch(str(cookie)):
        # RFC 6265 4.1.1: a token. Any other name is set, never sent back: every login "expired".
        found.append(f"{named('session.cookie_name')} must be letters, digits and !#$%&'*+-.^_`|~, "
                     f"not {cookie!r}")
    issuer = str(get("server.issuer") or "")
    if (cookie is not None and issuer.startswith("http://")
            and str(cookie).lower().startswith(("__host-", "__secure-"))):
        # Browsers keep such a cookie only when it is Secure, which an http issuer's is not
        # (idp.app.session_cookie_name): set, never kept, every login "expired".
        found.append(f"{named('session.cookie_name')} may begin with __Host- or __Secure- only with an "
                     f"https issuer (the provider adds __Host- itself then), not {cookie!r}")
    for dotted, example in (("ratelimit.login_posts_per_ip", "60 per minute"), ("password_reset.per_ip", "10 per hour"),
                            ("ratelimit.admin_exports", "10 per minute")):
        rate = get(dotted)
        if rate is not None and not _is_rate_limit(rate):
            found.append(f"{named(dotted)} must be a rate limit such as \"{example}\", not {rate!r}")
    memory, parallelism = get("security.argon2_memory_cost"), get("security.argon2_parallelism")
    if memory is not None and parallelism is not None and memory < 8 * parallelism:
        found.append(f"{named('security.argon2_memory_cost')} must be at least 8 KiB per lane "
                     f"(argon2_parallelism {parallelism}), not {memory!r}")
    return found


# Each worker reads the signing keys again at most this often (idp.oidc.keys._CACHE_SECONDS).
KEY_SNAPSHOT_SECONDS = 10
MAX_LOCKOUT_THRESHOLD = 1_000_000_000


def production_problems(get: Callable[[str], Any], named: Callable[[str], str]) -> list[str]:
    """What production refuses besides: password hashing weaker than OWASP's minimums, and a
    publish delay too short for the workers' own caches."""
    found = []
    memory, passes = get("security.argon2_memory_cost"), get("security.argon2_time_cost")
    if memory < OWASP_MIN_MEMORY_KIB or memory * passes < OWASP_MIN_MEMORY_PASSES:
        found.append(f"production refuses argon2id weaker than OWASP's minimum (m=19456 KiB with t=2, or "
                     f"at least {OWASP_MIN_MEMORY_KIB} KiB and memory x time cost {OWASP_MIN_MEMORY_PASSES}): "
                     f"{named('security.argon2_memory_cost')} {memory}, {named('security.argon2_time_cost')} {passes}")
    # A new key may sign in one worker while another still serves a JWKS copy without it (its
    # key snapshot and its cached document): relying parties would refuse those ID tokens.
    delay, documents = get("tokens.key_publish_delay"), get("ops.cached_documents_ttl")
    if delay is not None and documents is not None and delay < documents + KEY_SNAPSHOT_SECONDS:
        found.append(f"{named('tokens.key_publish_delay')} ({delay}) must be at least "
                     f"{named('ops.cached_documents_ttl')} ({documents}) + {KEY_SNAPSHOT_SECONDS} s in production: "
                     "a worker must not sign with a key the others do not publish yet")
    return found


def _lockout_problems(get, named, prefix: str) -> list[str]:
    threshold = get(f"{prefix}_failures_before_lockout")
    first, longest = get(f"{prefix}_lockout_seconds"), get(f"{prefix}_lockout_max_seconds")
    found = []
    if threshold is not None and threshold < 1:
        found.append(f"{named(f'{prefix}_failures_before_lockout')} must be at least 1, not {threshold!r}")
    # The counters' column is a 32-bit integer: a threshold beyond it made every guess a 500 (an
    # audit found it). A billion is still "never" (the bench lifts the limits to it).
    if threshold is not None and threshold > MAX_LOCKOUT_THRESHOLD:
        found.append(f"{named(f'{prefix}_failures_before_lockout')} must be at most {MAX_LOCKOUT_THRESHOLD}, "
                     f"not {threshold!r}")
    # Past a day a lockout is an account closed by whoever types wrong passwords (and past the
    # dates Python counts in, a 500 at the guess that reached the threshold).
    if first is not None and not 1 <= first <= DAY:
        found.append(f"{named(f'{prefix}_lockout_seconds')} must be between 1 and {DAY}, not {first!r}")
    if longest is not None and longest > 30 * DAY:
        found.append(f"{named(f'{prefix}_lockout_max_seconds')} must be at most {30 * DAY}, not {longest!r}")
    if first is not None and longest is not None and longest < first:
        found.append(f"{named(f'{prefix}_lockout_max_seconds')} ({longest}) must be at least "
                     f"{prefix}_lockout_seconds ({first})")
    return found


def _is_rate_limit(text: Any) -> bool:
    from limits import parse_many

    try:
        return isinstance(text, str) and bool(parse_many(text))
    except ValueError:
        return False
