"""Protocol v1 primitives (docs/push-protocol.md): the activation URI, device keys, and the
verification of device-signed JWTs.

Every check a device request must pass lives in `verify_device_token`, and every way to fail
raises the same `DeviceAuthError`, so the HTTP layer cannot leak which check failed (the
privacyIDEA lesson: one error for every verification failure).
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from idp.factors import display_text

VERSION = 1
URI_SCHEME = "idp-push"
PATH_PREFIX = "/v1"
MAX_TOKEN_LIFETIME = 60
CLOCK_SKEW = 30
_JTI = re.compile(r"^[A-Za-z0-9_.~-]{16,128}$")
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y")


class DeviceAuthError(Exception):
    """Any failure to authenticate a device request (deliberately without detail)."""


class InvalidRegistration(Exception):
    """A registration that is not well formed (bad JWS, key or claims)."""


def endpoint_base(issuer: str) -> str:
    """`E` in the protocol document: where every device request goes."""
    return issuer.rstrip("/") + "/factors/push" + PATH_PREFIX


def activation_uri(*, issuer: str, code: str, username: str, expires_at: int) -> str:
    query = urlencode({"v": VERSION, "issuer": issuer, "endpoint": endpoint_base(issuer), "code": code,
                       "user": username, "expires": int(expires_at)})
    return f"{URI_SCHEME}://activate?{query}"


def code_digest(code: str) -> str:
    """What the server keeps of an activation code (a reader of the database cannot activate)."""
    return hashlib.sha256(code.encode()).hexdigest()


def public_jwk(data: Any) -> dict:
    """A P-256 public JWK reduced to its public members; InvalidRegistration for anything else."""
    if not isinstance(data, Mapping) or data.get("kty") != "EC" or data.get("crv") != "P-256" or "d" in data:
        raise InvalidRegistration("not a P-256 public key")
    jwk = {name: data.get(name) for name in _PUBLIC_MEMBERS}
    if not all(isinstance(v, str) and v for v in jwk.values()):
        raise InvalidRegistration("not a P-256 public key")
    try:
        ECKey.import_key(jwk)
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidRegistration("not a P-256 public key") from exc
    return jwk


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 SHA-256 thumbprint: the device id."""
    return ECKey.import_key(dict(jwk)).thumbprint()


def unix_time(value: Any) -> bool:
    """Whether `value` is a usable Unix time: a JSON number, not a boolean, not NaN or infinite.

    Only floats are asked `math.isfinite`: an integer always is, and one beyond a float's range
    (`"iat": 1e400` spelled as 400 digits, which JSON parsers turn into an int) made it raise
    OverflowError, a 500 where the protocol answers a bad token. Such an int then simply fails
    the time window (Python compares int and float exactly)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    iat, exp = claims.get("iat"), claims.get("exp")
    if not (unix_time(iat) and unix_time(exp)):
        raise ValueError("iat/exp")  # (NaN, which JSON parsers accept, compares false to everything)
    if exp <= now or iat > now + CLOCK_SKEW or exp - iat > MAX_TOKEN_LIFETIME or exp < iat:
        raise ValueError("time window")


def _check_jti(claims: Mapping[str, Any]) -> str:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise ValueError("jti")
    return jti


@dataclass(frozen=True)
class Registration:
    jwk: dict
    device_id: str
    code: str
    name: str


def read_registration(token: Any, *, audience: str, now: float | None = None) -> Registration:
    """Verify a registration JWS (signed by the key in its own `jwk` header) and read its claims."""
    now = time.time() if now is None else now
    if not isinstance(token, str) or len(token) > 8192:
        raise InvalidRegistration("registration must be a compact JWS")
    try:
        header = jws.extract_compact(token.encode()).headers()
        if header.get("alg") != "ES256":
            raise InvalidRegistration("alg must be ES256")
        jwk = public_jwk(header.get("jwk"))
        claims = jwt.decode(token, ECKey.import_key(jwk), algorithms=["ES256"]).claims
        if claims.get("aud") != audience:
            raise InvalidRegistration("wrong aud")
        _check_times(claims, now)
        _check_jti(claims)
    except InvalidRegistration:
        raise
    except (JoseError, ValueError, TypeError, KeyError, RecursionError) as exc:  # (deeply nested claims)
        raise InvalidRegistration("registration does not verify") from exc
    code, name = claims.get("code"), device_name(claims.get("name"))
    if not isinstance(code, str) or not code or len(code) > 200:
        raise InvalidRegistration("code missing")
    if name is None:
        raise InvalidRegistration("name must be 1-100 characters")
    return Registration(jwk=jwk, device_id=thumbprint(jwk), code=code, name=name)


def device_name(value: Any) -> str | None:
    """A device's name as shown in lists: 1-100 characters as sent, control characters dropped
    (`display_text`: a NUL would not even fit in the database); None when nothing is left."""
    if not isinstance(value, str) or len(value) > 100:
        return None
    return display_text(value) or None


@dataclass(frozen=True)
class DeviceToken:
    device_id: str
    jti: str
    exp: int
    claims: dict


def verify_device_token(authorization: str | None, *, audience: str,
                        public_key_of: Callable[[str], Mapping[str, str] | None],
                        now: float | None = None) -> DeviceToken:
    """Authenticate a device request's `Authorization: Bearer <JWT>` (section 4 of the protocol).

    `public_key_of(device_id)` returns the live device's JWK or None (unknown, revoked).
    Replay (the `jti`) is checked by the caller, which owns storage. Raises DeviceAuthError.
    """
    now = time.time() if now is None else now
    try:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 8192:
            raise ValueError("no bearer token")
        header = jws.extract_compact(token.strip().encode()).headers()
        if header.get("alg") != "ES256" or not isinstance(header.get("kid"), str):
            raise ValueError("header")
        jwk = public_key_of(header["kid"])
        if jwk is None:
            raise ValueError("unknown device")
        claims = jwt.decode(token.strip(), ECKey.import_key(dict(jwk)), algorithms=["ES256"]).claims
        if claims.get("iss") != header["kid"] or claims.get("aud") != audience:
            raise ValueError("iss/aud")
        _check_times(claims, now)
        jti = _check_jti(claims)
    except (JoseError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise DeviceAuthError() from exc
    return DeviceToken(device_id=header["kid"], jti=jti, exp=int(claims["exp"]), claims=dict(claims))


def unix(moment) -> int:
    """Unix seconds of a naive UTC datetime (the project's time representation)."""
    import calendar

    return int(calendar.timegm(moment.utctimetuple()))


def utc_now():
    """Naive UTC now, as stored in every column (plugins do not import idp.db)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(tzinfo=None)
