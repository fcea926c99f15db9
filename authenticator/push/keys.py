"""The device key: a P-256 pair made on this device, whose private half never leaves it.

Every request to the server is a short-lived ES256 JWT signed with it (protocol section 4):
``iss`` the device id, ``aud`` the exact URL, a 60-second lifetime and a fresh ``jti``.

The app signs with ``cryptography`` directly (the app's boundary allows no JOSE library); an
ES256 JWS is small and fully specified (RFC 7515, RFC 7518 section 3.4: the signature is
R || S, 32 bytes each), and the server verifies it with an independent implementation
(joserfc), which the tests exercise end to end.
"""

import base64
import hashlib
import json
import secrets
import time
from typing import Optional

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

TOKEN_LIFETIME = 60


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def load(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not a P-256 private key")
    return key


def private_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big"))}


def device_id(key: ec.EllipticCurvePrivateKey) -> str:
    """The RFC 7638 thumbprint (SHA-256 of the required members in lexicographic order, no spaces):
    how the server names this device."""
    jwk = public_jwk(key)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def sign_jwt(key: ec.EllipticCurvePrivateKey, header: dict, claims: dict) -> str:
    signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64(json.dumps(claims, separators=(",", ":")).encode()))
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _times(now: Optional[float]) -> dict:
    now = int(time.time() if now is None else now)
    return {"iat": now, "exp": now + TOKEN_LIFETIME, "jti": secrets.token_urlsafe(24)}


def registration_token(key, *, audience: str, code: str, name: str, now: Optional[float] = None) -> str:
    """The registration JWS: signed by the new key, which travels in its own ``jwk`` header."""
    header = {"alg": "ES256", "typ": "JWT", "jwk": public_jwk(key)}
    return sign_jwt(key, header, {"aud": audience, "code": code, "name": name, **_times(now)})


def request_token(key, *, audience: str, extra: Optional[dict] = None, now: Optional[float] = None) -> str:
    """A device request token; ``extra`` carries an answer's claims (challenge, decision, number)."""
    kid = device_id(key)
    header = {"alg": "ES256", "typ": "JWT", "kid": kid}
    return sign_jwt(key, header, {"iss": kid, "aud": audience, **_times(now), **(extra or {})})
