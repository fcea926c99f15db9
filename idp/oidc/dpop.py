"""DPoP (RFC 9449): access tokens bound to a key the client holds, so that a stolen token is of
no use without the private key.

A client sends a `DPoP` header with its token request: a JWT it signed with a key of its own
(the public half in the JWT's header, `jwk`), saying which request it is for (`htm`, `htu`),
when (`iat`), with a unique `jti`. The tokens issued are then bound to that key's RFC 7638
thumbprint (`tokens.dpop_jkt`), and answered with `token_type: DPoP`. Any client may: nothing
is registered beforehand.

Where a bound token is used:
- UserInfo takes it only as `Authorization: DPoP <token>` with a fresh proof by the same key,
  for that request (`htm`, `htu`) and that token (`ath`, its SHA-256); as a Bearer token it is
  refused, and so is an unbound token sent with the DPoP scheme.
- Introspection tells resource servers: `token_type: DPoP`, `cnf: {"jkt": ...}` (RFC 9449 6.2).
- A refresh token issued to a public client is bound too (RFC 9449 5): refreshing it takes a
  proof by the same key. A confidential client's refresh token is not (its client
  authentication protects it); each access token it obtains is bound to the proof sent then.

A proof is checked as RFC 9449 4.3 lists: `typ` "dpop+jwt", an asymmetric algorithm, a public
`jwk` whose signature verifies, `htm` the request's method, `htu` the endpoint's URL (at this
server's issuer; query and fragment aside), `iat` within MAX_AGE in the past and LEEWAY in the
future, and `jti` never seen before from that key in that window: one INSERT into
`dpop_proofs` decides, committed before the request goes on. A refusal is `invalid_dpop_proof`
(400) at the token endpoint, `invalid_token` with a DPoP challenge (401) at UserInfo.

The authorization code can be bound too (RFC 9449 10): the authorization request's `dpop_jkt`
(the key's thumbprint), or a proof sent with a pushed request (idp.oidc.pushed_requests), is
kept with the code, which is then exchanged only with a proof by that key.

Server nonces (RFC 9449 8 and 9), with `tokens.dpop_require_nonce`: every proof (token, PAR,
UserInfo) must then carry a `nonce` this server gave out within the last NONCE_STEP to
2 x NONCE_STEP seconds, so that a proof made in advance (on a device since lost, or by
malware that had the key for a while) is of no use later. A proof without one, or with an old
or foreign one, is answered `use_dpop_nonce` (400 at the token and PAR endpoints, 401 with a
DPoP challenge at UserInfo) with a `DPoP-Nonce` header to use; every answer to a request with a
proof carries the current one (`offer_nonce`). Nonces are stateless: the time step and its HMAC
under the app's secret key, so that every worker and server sharing that key accepts them and
none is stored.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import current_app
from joserfc import jwk, jws, jwt
from joserfc.errors import JoseError
from joserfc.util import to_bytes

from idp.models import DPoPProof
from idp.oidc.client_assertion import MIN_RSA_BITS, SIGNING_ALGS
from idp.security.tokens import sha256_hex
from idp.single_use import record_once

HEADER = "DPoP"
NONCE_HEADER = "DPoP-Nonce"
NONCE_STEP = 300  # seconds: a nonce is good during its step and the next
TYP = "dpop+jwt"
ALGS = SIGNING_ALGS  # asymmetric only: never an HMAC, never `none`
MAX_AGE = 300  # seconds a proof is accepted after its iat
LEEWAY = 60  # seconds of clock difference allowed ahead
MAX_LENGTH = 8192
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class _ProofRegistry(jws.JWSRegistry):
    # The header carries the public key: an RSA one alone is larger than joserfc's default 512 bytes.
    max_header_length = 4096


_REGISTRY = _ProofRegistry(algorithms=list(ALGS))


class InvalidDPoPProof(OAuth2Error):
    """RFC 9449 5 and 12.2: the token request's DPoP proof cannot be used."""

    error = "invalid_dpop_proof"
    status_code = 400


class UseDPoPNonce(InvalidDPoPProof):
    """RFC 9449 8: the proof must carry a nonce of this server's (the answer's DPoP-Nonce)."""

    error = "use_dpop_nonce"


@dataclass(frozen=True)
class Proof:
    jkt: str  # the key's RFC 7638 thumbprint (SHA-256), what tokens are bound to
    jti: str
    iat: int


def proof_of(headers, method: str, url: str, access_token: str | None = None) -> Proof | None:
    """The request's DPoP proof, checked for `method` at `url` (and, at a resource, for
    `access_token`) but not yet spent (`spend`); None when the request has none. Raises
    InvalidDPoPProof saying what is wrong."""
    raw = headers.get(HEADER)
    if raw is None:
        return None
    if "," in raw:  # the server joined two DPoP headers (a JWT holds no comma)
        raise InvalidDPoPProof("Send one DPoP proof.")
    raw = raw.strip()
    if not raw or len(raw) > MAX_LENGTH:
        raise InvalidDPoPProof("The DPoP proof is empty or too long.")
    key, alg = _key_of(raw)
    try:
        claims = jwt.decode(raw, key, registry=_REGISTRY).claims
    except (JoseError, ValueError, TypeError):
        raise InvalidDPoPProof("The DPoP proof's signature does not verify with its jwk.") from None
    _check_claims(claims, method, url, access_token)
    if nonce_required() and not _is_current_nonce(claims.get("nonce")):
        raise UseDPoPNonce("Sign the DPoP proof again with the nonce of the DPoP-Nonce header.")
    return Proof(key.thumbprint(), claims["jti"], int(claims["iat"]))


def _key_of(raw: str) -> tuple[jwk.Key, str]:
    """The public key and algorithm the proof's header names, checked before its signature is."""
    try:
        header = jws.extract_compact(to_bytes(raw), registry=_REGISTRY).headers()
    except (JoseError, ValueError, TypeError):
        raise InvalidDPoPProof("The DPoP proof is not a JWT.") from None
    if header.get("typ") != TYP:
        raise InvalidDPoPProof(f"The DPoP proof's typ must be {TYP}.")
    alg = header.get("alg")
    if alg not in ALGS:
        raise InvalidDPoPProof(f"The DPoP proof's alg must be one of {', '.join(ALGS)}.")
    public = header.get("jwk")
    if not isinstance(public, dict) or any(member in public for member in _PRIVATE_MEMBERS):
        raise InvalidDPoPProof("The DPoP proof's header must hold the public key (jwk), and only it.")
    if public.get("kty") not in ("EC", "RSA", "OKP"):
        raise InvalidDPoPProof("The DPoP proof's jwk must be an EC, RSA or OKP key.")
    try:
        key = jwk.import_key(public)
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDPoPProof("The DPoP proof's jwk is not a valid public key.") from None
    if key.key_type == "RSA" and key.raw_value.key_size < MIN_RSA_BITS:
        raise InvalidDPoPProof(f"The DPoP proof's RSA key must have at least {MIN_RSA_BITS} bits.")
    return key, alg


def _check_claims(claims: dict, method: str, url: str, access_token: str | None) -> None:
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise InvalidDPoPProof("The DPoP proof needs a jti, a short string.")
    if htm != method:
        raise InvalidDPoPProof(f"The DPoP proof's htm must be {method}.")
    if not isinstance(htu, str) or _without_query(htu) is None or _without_query(htu) != _without_query(url):
        raise InvalidDPoPProof(f"The DPoP proof's htu must be {url}.")
    now = time.time()
    if not isinstance(iat, (int, float)) or isinstance(iat, bool) or not now - MAX_AGE <= iat <= now + LEEWAY:
        raise InvalidDPoPProof(f"The DPoP proof's iat must be within the last {MAX_AGE} seconds.")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise InvalidDPoPProof("The DPoP proof's ath must be the access token's SHA-256 (base64url).")


def _without_query(url: str) -> tuple | None:
    """A URL as RFC 9449 4.3 compares htu: scheme and host without regard to case, the default
    port implied, the path exactly; no user info, query nor fragment."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if parts.username is not None or parts.password is not None:  # "http://evil@host/...": not our URL
            return None
        return scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(scheme), parts.path or "/"
    except ValueError:
        return None


# ---------------------------------------------------------------------------- nonces

def nonce_required() -> bool:
    return bool(current_app.extensions["idp.settings"].get("tokens.dpop_require_nonce", False))


def current_nonce(now: float | None = None) -> str:
    """The nonce of this time step: the step's number and its HMAC, base64url."""
    step = int((time.time() if now is None else now) // NONCE_STEP)
    return base64.urlsafe_b64encode(step.to_bytes(8, "big") + _nonce_mac(step)).rstrip(b"=").decode()


def _is_current_nonce(nonce, now: float | None = None) -> bool:
    """Whether `nonce` is this step's or the previous one's, made with this server's key."""
    if not isinstance(nonce, str) or len(nonce) != 32:
        return False
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except ValueError:
        return False
    step = int.from_bytes(raw[:8], "big")
    current = int((time.time() if now is None else now) // NONCE_STEP)
    return step in (current, current - 1) and hmac.compare_digest(raw[8:], _nonce_mac(step))


def _nonce_mac(step: int) -> bytes:
    secret = current_app.secret_key
    key = hmac.new(secret.encode() if isinstance(secret, str) else secret, b"idp.oidc.dpop nonce",
                   hashlib.sha256).digest()
    return hmac.new(key, step.to_bytes(8, "big"), hashlib.sha256).digest()[:16]


def offer_nonce(response, request_headers):
    """RFC 9449 8.2: the answer to a request with a proof carries the current nonce, when
    nonces are required, so that the client's next proof can use it."""
    if HEADER in request_headers and nonce_required():
        response.headers[NONCE_HEADER] = current_nonce()
    return response


def access_token_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# ---------------------------------------------------------------------------- single use

def spend(proof: Proof) -> None:
    """Record the proof's jti, on its own connection and committed at once; InvalidDPoPProof
    when that key sent it before (a replay), whoever else is presenting it now."""
    expires_at = datetime.fromtimestamp(proof.iat + MAX_AGE + LEEWAY, timezone.utc).replace(tzinfo=None)
    if not record_once(DPoPProof.__table__, {"jkt": proof.jkt, "jti_hash": sha256_hex(proof.jti),
                                             "expires_at": expires_at}):
        raise InvalidDPoPProof("This DPoP proof was used before: sign a new one for each request.")

