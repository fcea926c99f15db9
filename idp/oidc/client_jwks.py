"""A client's public keys fetched from its `jwks_uri` (RFC 7591 2, OIDC Core 10.1.1): a client
that signs with its own keys (private_key_jwt, request objects) may publish them at a URL of
its own, `idp client add|update --jwks-uri URL`, and rotate them on its own schedule, with no
operator involved. The keys registered inline (`--jwks`) are the other way.

Each worker fetches the set when it first needs it and keeps it MAX_AGE seconds. A signature
whose `kid` none of the kept keys has (the client rotated) fetches the set again at once, but
not more than once per MIN_INTERVAL per URL: junk assertions naming made-up kids cannot make
this server hammer the client's. A fetch that fails keeps the last keys it had in use (the
client's server down for a moment should not lock it out); with none, the client cannot
authenticate (`invalid_client`), and the failure is logged as a warning. What is fetched is
checked as a registered set is (`client_assertion.public_jwks`: public signing keys only, at
most 10, distinct kids): a set that fails is a failed fetch.

A fetch that fails keeps the last good keys MAX_STALE seconds at most: a client that withdrew a
key and whose server then stays unreachable does not have it accepted for ever. One fetch per URL
at a time; a request that would wait for another's more than TIMEOUT seconds uses what is kept
(or gets KeysUnavailable) rather than hold its worker. Whatever goes wrong in fetching or reading
(a connection cut mid-answer, JSON nested too deep, a key that is no key) is a failed fetch.

The fetch: GET, no redirects followed, 200 with at most MAX_BYTES, all within TIMEOUT seconds
(connection and every byte: a server that trickles its answer is cut off at the deadline). The URL
was set by an operator (`idp client`), never by a request: https in production but for a
loopback address, as a redirect URI (idp.clients.check_redirect_uri).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from joserfc import jwk

from idp.oidc.client_assertion import JwksRefused, key_set as parsed_key_set, public_jwks
from idp.oidc.outbound import Deadline, watched_session

log = logging.getLogger(__name__)
TIMEOUT = 5.0
MAX_BYTES = 64 * 1024
MAX_AGE = 300.0  # seconds a fetched set is used before it is fetched again
MIN_INTERVAL = 30.0  # seconds between two fetches of one URL, whatever fails to verify
MAX_STALE = 24 * 3600.0  # seconds the last good keys stand in for fetches that fail
MAX_ENTRIES = 10_000


class KeysUnavailable(RuntimeError):
    """No keys of the client's can be had: its jwks_uri could not be fetched (and nothing was
    kept from before); the message says what happened, for the log."""


@dataclass
class _Kept:
    keys: jwk.KeySet | None  # the last good set, if any
    kids: frozenset
    attempted_at: float  # time.monotonic() of the last fetch, good or not
    error: str | None = None  # why the last fetch failed
    good_at: float = 0.0  # time.monotonic() of the fetch that gave `keys`


_kept: dict[str, _Kept] = {}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def key_set(uri: str, *, wanted_kid: str | None = None) -> jwk.KeySet:
    """The keys published at `uri`: the kept set while younger than MAX_AGE and holding
    `wanted_kid` (when one is named), else fetched again (at most once per MIN_INTERVAL).
    KeysUnavailable when there are none."""
    entry = _kept.get(uri)
    if entry is not None and not _stale(entry, wanted_kid):
        return _usable(entry)
    lock = _lock_for(uri)
    if not lock.acquire(timeout=TIMEOUT):  # another thread's fetch is slow: do not wait for it
        if entry is None:
            raise KeysUnavailable("a fetch of these keys is already under way")
        return _usable(entry)
    try:
        entry = _kept.get(uri)  # another thread may have fetched it meanwhile
        if entry is None or _stale(entry, wanted_kid):
            entry = _refresh(uri, entry)
    finally:
        lock.release()
    return _usable(entry)


def forget_all() -> None:
    """Drop every kept set (tests; a worker that must read every client's keys afresh)."""
    _kept.clear()


def _stale(entry: _Kept, wanted_kid: str | None) -> bool:
    age = time.monotonic() - entry.attempted_at
    if age < MIN_INTERVAL:
        return False
    return age >= MAX_AGE or entry.keys is None or (wanted_kid is not None and wanted_kid not in entry.kids)


def _usable(entry: _Kept) -> jwk.KeySet:
    if entry.keys is None:
        raise KeysUnavailable(entry.error or "no keys")
    return entry.keys


def _lock_for(uri: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(uri, threading.Lock())


def _refresh(uri: str, previous: _Kept | None) -> _Kept:
    now = time.monotonic()
    try:
        keys = parsed_key_set(public_jwks(_fetch(uri)))
    except Exception as failure:  # noqa: BLE001 - whatever the client's server sent: a failed fetch
        why = str(failure) if isinstance(failure, (KeysUnavailable, JwksRefused)) else type(failure).__name__
        log.warning("the keys at jwks_uri %s could not be used: %s", uri, why)
        if previous is not None and previous.keys is not None and now - previous.good_at < MAX_STALE:
            entry = _Kept(previous.keys, previous.kids, now, why, previous.good_at)
        else:
            entry = _Kept(None, frozenset(), now, why)
    else:
        entry = _Kept(keys, frozenset(key.kid for key in keys.keys if key.kid), now, good_at=now)
    if len(_kept) >= MAX_ENTRIES and uri not in _kept:
        _kept.clear()
    _kept[uri] = entry
    return entry


def _fetch(uri: str) -> bytes:
    import requests  # here: few processes ever fetch a client's keys

    body = b""
    with Deadline(TIMEOUT) as deadline, watched_session() as session:  # (idp.oidc.outbound)
        try:
            with session.get(uri, timeout=TIMEOUT, allow_redirects=False, stream=True,
                             headers={"Accept": "application/jwk-set+json, application/json"}) as answer:
                if answer.status_code != 200:
                    raise KeysUnavailable(f"answered {answer.status_code}")
                while len(body) <= MAX_BYTES:
                    chunk = answer.raw.read1(MAX_BYTES + 1 - len(body), decode_content=True)  # what has arrived
                    if not chunk:
                        break
                    body += chunk
        except (requests.RequestException, OSError, ValueError) as failure:
            if deadline.expired:  # its sockets were cut: say why
                raise KeysUnavailable(f"no whole answer within {TIMEOUT:g} seconds") from failure
            raise
        if deadline.expired:  # cut while the last bytes came in: an end the server did not choose
            raise KeysUnavailable(f"no whole answer within {TIMEOUT:g} seconds")
    if len(body) > MAX_BYTES:
        raise KeysUnavailable(f"more than {MAX_BYTES // 1024} KiB")
    return body
