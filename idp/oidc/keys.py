"""ID-token signing keys: creation, rotation, the JWKS document, and the key that signs now.

Rotation publishes first: `rotate()` adds a new key to the JWKS at once, but it only
starts signing after `tokens.key_publish_delay` seconds (relying parties that cache
the JWKS see it before any token uses it). The old key stops signing at that moment
and stays in the JWKS until every ID token it signed has expired.

Private keys are sealed with the secret key ring (associated data `signing-key|KID`).
Parsed keys are cached per process for a few seconds: signing must not hit the
database or re-parse PEM on every token.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import current_app
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import bindparam, select

from idp.config_ranges import KEY_SNAPSHOT_SECONDS
from idp.db import db, utcnow
from idp.models import SigningKey
from idp.security.secrets import SecretError
from idp.security.tokens import random_token

SUPPORTED_ALGS = ("ES256", "RS256")
# A key's `private_ciphertext` once `idp purge` wiped it (idp.maintenance): the key is out of the
# JWKS for good, and its private half must not outlive its use. Nothing opens it (AES-GCM refuses
# an empty blob); the row keeps its public JWK and dates.
WIPED = b""
_CACHE_SECONDS = float(KEY_SNAPSHOT_SECONDS)  # (production's publish delay is checked against it)


def _settings():
    return current_app.extensions["idp.settings"]


def _keyring():
    return current_app.extensions["idp.keyring"]


def _aad(kid: str) -> bytes:
    return f"signing-key|{kid}".encode()


def _generate(alg: str):
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def _as_jwk(alg: str, private):
    """The joserfc key of a `cryptography` private key object."""
    return (ECKey if alg == "ES256" else RSAKey).import_key(private)


def _import_key(alg: str, pem: bytes):
    """A key of ours, as `create_key` sealed it. The seal is authenticated (AES-GCM), so this is
    the key generated here: OpenSSL's RSA consistency checks, which guard against keys from
    elsewhere, are skipped (about 60 ms of CPU per RSA key)."""
    return _as_jwk(alg, serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True))


def create_key(alg: str, activates_at: datetime | None = None) -> SigningKey:
    """Generate, seal and add a key that signs from `activates_at` (default: now); not committed."""
    return _add_key(_generated_key(alg), activates_at)


def _generated_key(alg: str) -> SigningKey:
    """A new key, generated and sealed: a row neither dated nor added to the session. The slow
    part (an RSA key takes tens to hundreds of milliseconds of CPU), which `rotate` does before
    its transaction begins."""
    private = _generate(alg)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    kid = f"{alg.lower()}-{random_token(9)}"
    public = _as_jwk(alg, private).as_dict(private=False, kid=kid, alg=alg, use="sig")
    key_id, blob = _keyring().seal(pem, _aad(kid))
    return SigningKey(kid=kid, alg=alg, private_ciphertext=blob, secret_key_id=key_id, public_jwk=public)


def _add_key(row: SigningKey, activates_at: datetime | None) -> SigningKey:
    row.created_at = utcnow()
    row.activates_at = activates_at or row.created_at
    db.session.add(row)
    return row


def ensure_signing_key(actor: str | None = None) -> list[SigningKey]:
    """Make sure every supported algorithm has a usable key; idempotent (`idp init`). With `actor`,
    keys created are audited (`signing_key.created`) in the same transaction."""
    from idp.schema import wait_for_other_inits

    # Two inits at once would each find no key and each make one: several "active" keys per
    # algorithm and as many `signing_key.created` events. The look and the keys, one init at a time.
    wait_for_other_inits(db.session)
    created = []
    for alg in SUPPORTED_ALGS:
        exists = db.session.scalar(
            select(SigningKey.id).where(SigningKey.alg == alg, SigningKey.retired_at.is_(None)).limit(1))
        if exists is None:
            created.append(create_key(alg))
    if created and actor:
        from idp import audit

        db.session.flush()
        audit.record("signing_key.created", org_id=None, actor=actor,
                     details={"keys": [{"kid": key.kid, "alg": key.alg} for key in created]})
    db.session.commit()
    invalidate_cache()
    return created


def rotate(algs: tuple[str, ...] = SUPPORTED_ALGS, actor: str | None = None) -> list[SigningKey]:
    """Publish a new key per algorithm; retire the current ones after the publish delay. With
    `actor`, audited (`signing_key.rotated`, the new keys) in the same transaction.

    Raises SecretError, changing nothing, when this process's encryption keys cannot open the
    keys in use: a rotation run with another key ring seals new keys the servers cannot open,
    and once they start signing every token request fails."""
    settings = _settings()
    _check_key_ring()
    # Generated before the transaction begins: on SQLite it holds the database's write lock, and
    # every request of every server would wait through the key generation.
    generated = [_generated_key(alg) for alg in algs]
    now = utcnow()
    delay = _publish_delay()
    keep = timedelta(seconds=int(settings.get("tokens.id_token_ttl", 3600))
                     + int(settings.get("tokens.retired_key_grace", 0)))
    new_keys = []
    for alg, row in zip(algs, generated, strict=True):
        for old in db.session.scalars(select(SigningKey).where(SigningKey.alg == alg,
                                                               SigningKey.retired_at.is_(None))):
            old.retired_at = now + delay
            old.remove_after = now + delay + keep
        new_keys.append(_add_key(row, activates_at=now + delay))
    if actor:
        from idp import audit

        audit.record("signing_key.rotated", org_id=None, actor=actor,
                     details={"new_keys": [{"kid": key.kid, "alg": key.alg} for key in new_keys]})
    db.session.commit()
    invalidate_cache()
    return new_keys


def _publish_delay() -> timedelta:
    return timedelta(seconds=int(_settings().get("tokens.key_publish_delay", 0)))


def _check_key_ring() -> None:
    """SecretError unless this process's encryption keys open the keys in use: a command run with
    another key ring than the servers' would seal new keys they cannot open (every token request
    fails once one signs)."""
    lost = _unopenable_rows()
    if lost:
        raise SecretError(f"these encryption keys cannot open signing key {lost[0].kid} (sealed with "
                          f"{lost[0].secret_key_id!r}): run idp with the servers' security.encryption_keys")


class KeyRefused(ValueError):
    """A key change that cannot be made; the message says why, for people."""


@dataclass(frozen=True)
class Withdrawal:
    kid: str
    alg: str
    signs_now: str        # the kid that signs this algorithm's ID tokens now
    created: str | None   # the kid of the key made to take the withdrawn one's place, if one was


_ALG_OF_KID = select(SigningKey.alg).where(SigningKey.kid == bindparam("kid"))


def withdraw(kid: str) -> Withdrawal:
    """Take a key out of use and out of the JWKS now, not when its tokens expire: the answer to a
    private key that leaked. Every ID token it signed stops verifying at the relying parties (which
    is the point); ID tokens are signed from now on by the algorithm's next key, made active at
    once (a key published by `rotate` and still waiting, else a new one: there is no publish delay
    to keep: signing with a leaked key meanwhile would be worse). Withdrawing a key that was only
    published (waiting to sign) makes another to take its place, published for the whole
    publish delay first, the key signing now signing on until then (or, with another key still
    waiting, until that one starts). Not committed; the caller commits (and audits). Raises
    KeyRefused, or SecretError as `rotate` does."""
    # The key that may take its place is generated before the transaction begins, as `rotate`'s
    # are: an RSA key takes tens to hundreds of milliseconds, through which SQLite's write lock
    # (taken as every transaction begins) would keep every server waiting. Unused when a key
    # published by `rotate` waits to take over.
    found = db.read_first(_ALG_OF_KID, {"kid": kid})  # (outside any transaction: the CLI opened none)
    if found is None:
        raise KeyRefused(f"unknown signing key {kid!r} (see idp keys list)")
    replacement = _generated_key(found.alg)
    now = utcnow()
    row = db.session.scalar(select(SigningKey).where(SigningKey.kid == kid).with_for_update())
    if row is None:  # (deleted meanwhile by hand: no command deletes a key's row, `idp purge` only
        # wipes the private key of a removed one, which the check below refuses)
        raise KeyRefused(f"unknown signing key {kid!r} (see idp keys list)")
    if key_status(row, now) == "removed":
        raise KeyRefused(f"signing key {kid!r} is already out of the JWKS")
    _check_key_ring()
    row.retired_at = min(row.retired_at or now, now)
    row.remove_after = now
    siblings = [r for r in db.session.scalars(select(SigningKey).where(SigningKey.alg == row.alg,
                                                                       SigningKey.id != row.id))
                if key_status(r, now) != "removed"]
    active = [r for r in siblings if key_status(r, now) == "active"]
    successors = sorted((r for r in siblings if r.retired_at is None), key=lambda r: r.activates_at)
    new_key = None
    if successors:
        if not active:  # the withdrawn key was signing: its successor signs now, not after the delay
            successors[-1].activates_at = min(successors[-1].activates_at, now)
        else:
            # A key still waits (a second rotation's): the key signing now signs on until it
            # starts, should the withdrawn one have been due to take over before (no moment
            # without a signing key).
            _sign_on_until(active, min(s.activates_at for s in successors))
    elif active:
        # The withdrawn key was the one to sign next: a new key takes its place, published for the
        # whole publish delay first (relying parties cache the JWKS), however soon the key still
        # signing was to retire: that one signs on until then, and stays published as long after.
        starts = max(max(r.retired_at or now for r in active), now + _publish_delay())
        _sign_on_until(active, starts)
        new_key = _add_key(replacement, activates_at=starts)
    else:  # it was the only one: a new key signs now (no publish delay to keep with a leaked key)
        new_key = _add_key(replacement, activates_at=now)
    db.session.flush()
    return Withdrawal(kid=row.kid, alg=row.alg, signs_now=_signer(row.alg, now).kid,
                      created=new_key.kid if new_key is not None else None)


def _sign_on_until(active: list[SigningKey], moment: datetime) -> None:
    """Keep the signing keys signing until `moment` if they were to retire before it, and
    published as long after as they would have been."""
    for signing in active:
        if signing.retired_at is not None and signing.retired_at < moment:
            signing.remove_after = moment + (signing.remove_after - signing.retired_at)
            signing.retired_at = moment


def _signer(alg: str, now: datetime) -> SigningKey:
    """The key `_load` picks to sign `alg` at `now`: the active one activated last."""
    rows = db.session.scalars(select(SigningKey).where(SigningKey.alg == alg)
                              .order_by(SigningKey.activates_at.desc(), SigningKey.id.desc()))
    return next(r for r in rows if key_status(r, now) == "active")


def key_status(row: SigningKey, now: datetime) -> str:
    """removed (gone from the JWKS) | retired (published, no longer signs) | published (not signing yet) | active."""
    if row.remove_after is not None and row.remove_after <= now:
        return "removed"
    if row.retired_at is not None and row.retired_at <= now:
        return "retired"
    if row.activates_at > now:
        return "published"
    return "active"


def list_keys() -> list[dict]:
    now = utcnow()
    rows = db.session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
    from idp.factors.cli import iso_utc  # the idp command's one time format

    return [{"kid": r.kid, "alg": r.alg, "created_at": iso_utc(r.created_at),
             "activates_at": iso_utc(r.activates_at),
             "retired_at": iso_utc(r.retired_at) if r.retired_at else None,
             "remove_after": iso_utc(r.remove_after) if r.remove_after else None,
             "status": key_status(r, now)} for r in rows]


def reseal_all() -> int:
    """Re-encrypt signing keys sealed with an old encryption key (`idp keys rotate-secrets`).
    Not committed: the caller commits, with its audit event.

    A key `idp purge` wiped (WIPED) is skipped. A retired or removed key whose encryption key left
    the ring is left as it is: nothing opens it again (it only publishes its public half, or
    nothing), so `idp init` let that encryption key go (`unopenable`), and refusing here would stop
    every later rotation, the credentials' included, for want of a key nobody needs. Keys signing
    now or waiting to still raise SecretError."""
    ring, now = _keyring(), utcnow()
    count = 0
    for row in db.session.scalars(select(SigningKey)):
        if row.private_ciphertext == WIPED:
            continue  # (a removed key whose private half `idp purge` wiped: nothing to reseal)
        if ring.needs_reseal(row.secret_key_id):
            try:
                pem = ring.open(row.secret_key_id, row.private_ciphertext, _aad(row.kid))
            except SecretError:
                if key_status(row, now) in ("retired", "removed"):
                    continue
                raise
            row.secret_key_id, row.private_ciphertext = ring.seal(pem, _aad(row.kid))
            count += 1
    return count


@dataclass(frozen=True)
class KeySnapshot:
    """What this process signs with and publishes, as of `loaded_at`."""

    signing: dict  # alg -> (kid, joserfc key)
    jwks_json: str
    loaded_at: float


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.snapshots: dict[int, KeySnapshot] = {}


_cache = _Cache()
# kid -> joserfc private key, once opened: a kid's key never changes, and the snapshot is read
# again every _CACHE_SECONDS.
_opened: dict[str, object] = {}


def invalidate_cache() -> None:
    with _cache.lock:
        _cache.snapshots.pop(id(current_app._get_current_object()), None)


def _load() -> KeySnapshot:
    now = utcnow()
    rows = db.session.scalars(select(SigningKey).order_by(SigningKey.activates_at.desc())).all()
    published = [r for r in rows if key_status(r, now) != "removed"]
    signing = {}
    for alg in SUPPORTED_ALGS:
        candidates = [r for r in rows if r.alg == alg and key_status(r, now) == "active"]
        if candidates:
            row = candidates[0]
            signing[alg] = (row.kid, _opened.get(row.kid) or _open(row))
    jwks = json.dumps({"keys": [r.public_jwk for r in published]}, separators=(",", ":"))
    return KeySnapshot(signing=signing, jwks_json=jwks, loaded_at=time.monotonic())


_ALL_KEYS = select(*SigningKey.__table__.c)


def unopenable() -> list[str]:
    """The kids of the keys signing now or waiting to that the encryption key ring cannot open:
    a ring that lost the key which sealed them. Checked by `idp init`, `idp serve`
    and /readyz, so that it is one line at start or an unready instance, not a 500 on every
    token and JWKS request (the snapshot opens the signing keys); and before a key change
    (`_check_key_ring`)."""
    return [row.kid for row in _unopenable_rows()]


def unopenable_by_sealer() -> dict[str, list[str]]:
    """`unopenable`'s kids by the encryption key id that sealed them (`idp init`'s message: rows
    of "dev", the development key, have a cause of their own)."""
    found: dict[str, list[str]] = {}
    for row in _unopenable_rows():
        found.setdefault(row.secret_key_id, []).append(row.kid)
    return found


def _unopenable_rows() -> list:
    now, ring, found = utcnow(), _keyring(), []
    # A read outside any transaction when none is open (db.read_all): on SQLite a session's
    # transaction takes the write lock, which `idp serve` would then hold while it serves, and
    # every probe would take.
    for row in db.read_all(_ALL_KEYS, {}):
        if key_status(row, now) not in ("active", "published"):
            continue  # retired keys only publish their public half: nothing opens them again
        try:
            ring.open(row.secret_key_id, row.private_ciphertext, _aad(row.kid))
        except SecretError:
            found.append(row)
    return found


def readiness() -> str | None:
    """/readyz's check (idp.ops.add_readiness_check): None when every published key opens."""
    try:
        lost = unopenable()  # (cheap: the AES-GCM opening of a few rows, no key import)
    except Exception as exc:  # no schema (a database `idp init` never made)
        return f"signing keys unreadable ({exc.__class__.__name__}: {str(exc)[:200]})"
    return f"the encryption keys cannot open signing key(s) {', '.join(lost)}" if lost else None


def _open(row: SigningKey):
    pem = _keyring().open(row.secret_key_id, row.private_ciphertext, _aad(row.kid))
    key = _opened[row.kid] = _import_key(row.alg, pem)
    return key


def snapshot() -> KeySnapshot:
    app_id = id(current_app._get_current_object())
    snap = _cache.snapshots.get(app_id)
    if snap is None or time.monotonic() - snap.loaded_at > _CACHE_SECONDS:
        snap = _load()
        with _cache.lock:
            _cache.snapshots[app_id] = snap
    return snap


def signing_key(alg: str) -> tuple[str, object]:
    """(kid, key) that signs with `alg` now."""
    try:
        return snapshot().signing[alg]
    except KeyError:
        raise RuntimeError(f"no signing key for {alg}: run `idp init`") from None


def id_token_subject(id_token: str) -> str | None:
    """The `sub` of an ID token this provider issued (signature by a published key, our issuer),
    or None. Expiry is not checked: an `id_token_hint` may be an old token (OIDC Core 3.1.2.1)."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    if not isinstance(id_token, str) or len(id_token) > 8192:
        return None
    try:
        key_set = KeySet.import_key_set(json.loads(snapshot().jwks_json))
        token = jwt.decode(id_token, key_set, algorithms=list(SUPPORTED_ALGS))
    except (JoseError, ValueError, TypeError):
        return None
    claims = token.claims
    if claims.get("iss") != current_app.extensions["idp.settings"].issuer:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None
