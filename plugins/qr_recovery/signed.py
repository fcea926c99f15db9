"""Reading a device's signed request: a compact ES256 JWS signed by the device's *new* key,
which travels in the JWS header (`jwk`), exactly like a push registration
(docs/push-protocol.md section 3). It proves the device holds the private half of the key
the server is asked to register.

Checks: ES256 only; the header key is a P-256 public JWK (no private member); the
signature verifies with it; `aud` is the exact endpoint URL; `iat`/`exp` within 60 s and
30 s of clock skew; a `jti` nonce. Every failure is the same `InvalidSignedRequest`.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from idp.factors import display_text

MAX_LIFETIME = 60
CLOCK_SKEW = 30
_JTI = re.compile(r"^[A-Za-z0-9_.~-]{16,128}$")


class InvalidSignedRequest(Exception):
    """Not a well-formed, correctly signed, current request for this endpoint."""


@dataclass(frozen=True)
class SignedRequest:
    jwk: dict          # the public key, reduced to kty/crv/x/y
    device_id: str     # its RFC 7638 thumbprint
    claims: dict


def _public_jwk(data: Any) -> dict:
    if not isinstance(data, Mapping) or data.get("kty") != "EC" or data.get("crv") != "P-256" or "d" in data:
        raise InvalidSignedRequest("not a P-256 public key")
    jwk = {name: data.get(name) for name in ("kty", "crv", "x", "y")}
    if not all(isinstance(v, str) and v for v in jwk.values()):
        raise InvalidSignedRequest("not a P-256 public key")
    return jwk


def read(token: Any, *, audience: str, now: float | None = None) -> SignedRequest:
    now = time.time() if now is None else now
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise InvalidSignedRequest("not a compact JWS")
    try:
        header = jws.extract_compact(token.encode()).headers()
        if header.get("alg") != "ES256":
            raise InvalidSignedRequest("alg must be ES256")
        jwk = _public_jwk(header.get("jwk"))
        key = ECKey.import_key(jwk)
        claims = dict(jwt.decode(token, key, algorithms=["ES256"]).claims)
        iat, exp = claims.get("iat"), claims.get("exp")
        # (Only floats can be NaN or infinite; asking math.isfinite of an int too big for a float
        # raised OverflowError, a 500: `"exp": 1` followed by 400 zeros is valid JSON.)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   and (isinstance(v, int) or math.isfinite(v)) for v in (iat, exp)):
            raise InvalidSignedRequest("iat/exp")  # (NaN, which JSON parsers accept, compares false to everything)
        if exp <= now or iat > now + CLOCK_SKEW or exp < iat or exp - iat > MAX_LIFETIME:
            raise InvalidSignedRequest("outside its time window")
        if claims.get("aud") != audience:
            raise InvalidSignedRequest("wrong aud")
        if not isinstance(claims.get("jti"), str) or not _JTI.fullmatch(claims["jti"]):
            raise InvalidSignedRequest("jti")
        return SignedRequest(jwk=jwk, device_id=key.thumbprint(), claims=claims)
    except InvalidSignedRequest:
        raise
    except (JoseError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # (RecursionError: claims nested thousands deep, well within the size limit)
        raise InvalidSignedRequest("does not verify") from exc


def device_name(claims: Mapping[str, Any]) -> str | None:
    """The new device's name, as push stores names (1-100 characters as sent, control characters
    dropped); None when nothing is left: a name of control characters alone is no name."""
    name = claims.get("name")
    if not isinstance(name, str) or len(name) > 100:
        return None
    return display_text(name) or None
