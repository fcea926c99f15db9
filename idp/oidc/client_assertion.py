"""private_key_jwt (RFC 7523 2.2, OIDC Core 9): a client authenticates with a JWT it signed.

A confidential client may be registered with a JWK Set of public keys instead of a secret
(`idp client add --jwks FILE`), or with the URL where it publishes them (`--jwks-uri URL`,
idp.oidc.client_jwks). At the token, revocation, introspection and PAR endpoints it then
sends `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
`client_assertion`: a JWT signed with one of those keys, whose `iss` and `sub` are its
client_id, `aud` this server (its issuer, or the endpoint's URL), `exp` when it stops being
valid, and `jti` a value it never sends again. No secret of the client is stored anywhere,
so a leak of this server's database lets nobody act as the client.

Authlib's `JWTBearerClientAssertion` reads and checks the assertion; this module says which
keys and algorithms count, which audiences, and keeps the `jti` single use: one INSERT into
`client_assertions`, on a connection of its own and committed at once, decides (two requests
that present one assertion at the same moment: one authenticates, the other gets
`invalid_client`). A `jti` is kept until its assertion expires; an assertion valid for longer
than MAX_LIFETIME is refused, so that the table stays small (`idp purge` deletes the expired).

Registered keys: public, asymmetric (EC P-256/384/521, RSA of 2048 bits or more, Ed25519 or
Ed448), for signing, each with its own `kid` when there are several (the assertion's header
names the one it used). client_secret_jwt (an HMAC keyed with the secret) is not offered: it
needs the secret itself, and only its SHA-256 is stored.
"""
from __future__ import annotations

import json
import time
import warnings
from datetime import datetime, timezone

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import current_app
from joserfc import jwk, jwt
from joserfc.errors import JoseError, SecurityWarning
from idp.models import ClientAssertion
from idp.oidc import urls
from idp.single_use import record_once
from idp.security.tokens import sha256_hex

METHOD = "private_key_jwt"
ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
# Every asymmetric JWS algorithm; for Edwards curves the fully specified names of RFC 9864 and
# the older "EdDSA" that client libraries still send.
SIGNING_ALGS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512",
                "Ed25519", "Ed448", "EdDSA")
LEEWAY = 60  # seconds of clock difference allowed on exp, nbf and iat
# The longest an assertion may be valid from now: its jti is kept that long. (An hour is what
# common client libraries give theirs, Authlib's among them.)
MAX_LIFETIME = 3600
MAX_KEYS = 10
MIN_RSA_BITS = 2048
_CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519", "Ed448")}
# JWK members that only a private (or symmetric) key has (RFC 7518 6.2.2, 6.3.2, 6.4; RFC 8037 2).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e"), "OKP": ("kty", "crv", "x")}
# The algorithms each kind of key signs with: a key registered with another `alg` could verify nothing.
_ALGS_FOR = {("EC", "P-256"): ("ES256",), ("EC", "P-384"): ("ES384",), ("EC", "P-521"): ("ES512",),
             ("RSA", None): ("PS256", "PS384", "PS512", "RS256", "RS384", "RS512"),
             ("OKP", "Ed25519"): ("Ed25519", "EdDSA"), ("OKP", "Ed448"): ("Ed448", "EdDSA")}


# joserfc warns of what this module decides on purpose: an RSA key under 2048 bits (refused at
# registration, with a message of ours) and "EdDSA" (accepted, beside RFC 9864's names).
warnings.filterwarnings("ignore", message="Key size should be", category=SecurityWarning)
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


class JwksRefused(ValueError):
    """A JWK Set that cannot be registered; the message says why, for people."""


def public_jwks(document) -> dict:
    """The JWK Set to store for a client, from what an operator gave (a JWK Set as JSON text or
    parsed, one JWK alone, or one public key in PEM, which becomes a set of one key named by its
    thumbprint):
    each key's public members, with its `kid`, `alg` and `use` when given. Raises JwksRefused
    saying what is wrong: not a JWK Set, too many keys, a private or symmetric key, a curve,
    size or algorithm this server does not verify, keys without distinct `kid`s."""
    if isinstance(document, bytes):
        document = document.decode("utf-8", errors="replace")
    if isinstance(document, str) and document.lstrip().startswith("-----BEGIN"):
        document = {"keys": [_pem_public_key(document)]}
    elif isinstance(document, str):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):  # (RecursionError: a document nested thousands deep)
            raise JwksRefused("the JWK Set is not JSON (nor one public key in PEM)") from None
    if isinstance(document, dict) and "kty" in document and "keys" not in document:
        document = {"keys": [document]}  # one JWK alone, as many tools export a key
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise JwksRefused('the JWK Set must be a JSON object with a non-empty "keys" array')
    if len(keys) > MAX_KEYS:
        raise JwksRefused(f"the JWK Set holds {len(keys)} keys; at most {MAX_KEYS}")
    stored = [_public_key(entry, number) for number, entry in enumerate(keys, start=1)]
    kids = [key.get("kid") for key in stored]
    if len(stored) > 1 and (None in kids or len(set(kids)) != len(kids)):
        raise JwksRefused('with several keys, each needs its own "kid" (the assertion names the one it used)')
    return {"keys": stored}


def _pem_public_key(text: str) -> dict:
    """One PEM public key as a JWK, its `kid` its RFC 7638 thumbprint."""
    if "PRIVATE KEY-----" in text:
        raise JwksRefused("the PEM file holds a private key: register only the public key")
    if text.count("-----BEGIN") != 1:
        raise JwksRefused("a PEM file gives one public key: several keys go in a JWK Set")
    for kty in ("EC", "RSA", "OKP"):
        try:
            key = jwk.import_key(text.strip().encode(), kty)
        except (JoseError, ValueError, TypeError):
            continue
        return {**key.as_dict(private=False), "kid": key.thumbprint()}
    raise JwksRefused("the PEM file is not an EC, RSA or Edwards-curve public key")


def _public_key(entry, number: int) -> dict:
    if not isinstance(entry, dict):
        raise JwksRefused(f"key {number} is not a JSON object")
    if any(member in entry for member in _PRIVATE_MEMBERS):
        raise JwksRefused(f"key {number} is a private or symmetric key: register only the public keys")
    kty = entry.get("kty")
    if kty not in ("EC", "RSA", "OKP"):
        raise JwksRefused(f'key {number} has kty {kty!r}: only "EC", "RSA" and "OKP" keys sign assertions here')
    if kty in _CURVES and entry.get("crv") not in _CURVES[kty]:
        raise JwksRefused(f"key {number} has curve {entry.get('crv')!r} (choose from {', '.join(_CURVES[kty])})")
    if entry.get("use", "sig") != "sig":
        raise JwksRefused(f'key {number} is for use {entry.get("use")!r}, not "sig"')
    if "alg" in entry and entry["alg"] not in SIGNING_ALGS:
        raise JwksRefused(f"key {number} has alg {entry['alg']!r} (choose from {', '.join(SIGNING_ALGS)})")
    if "alg" in entry and entry["alg"] not in _ALGS_FOR.get((kty, entry.get("crv")), ()):
        raise JwksRefused(f"key {number} has alg {entry['alg']!r}, which a {kty} key "
                          f"{'on ' + entry['crv'] + ' ' if entry.get('crv') else ''}cannot sign with")
    kid = entry.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > 200):
        raise JwksRefused(f'key {number} has a "kid" that is not a short string')
    try:
        key = jwk.import_key(entry)
    except (JoseError, ValueError, TypeError, KeyError):
        raise JwksRefused(f"key {number} is not a valid {kty} public key") from None
    if kty == "RSA" and key.raw_value.key_size < MIN_RSA_BITS:
        raise JwksRefused(f"key {number} is an RSA key of {key.raw_value.key_size} bits; at least {MIN_RSA_BITS}")
    # Only what verifying takes: a certificate chain or URL (x5c, x5u) is not followed here.
    public = {name: value for name, value in key.as_dict(private=False).items() if name in _PUBLIC_MEMBERS[kty]}
    public.update({member: entry[member] for member in ("kid", "alg", "use") if member in entry})
    return public


def thumbprints(jwks: dict | None) -> list[str]:
    """The keys' RFC 7638 thumbprints (SHA-256): how `idp client show` and the audit log name them."""
    if not jwks:
        return []
    return [jwk.import_key(key).thumbprint() for key in jwks["keys"]]


# The endpoints that take a client assertion (those where a client authenticates).
_ASSERTION_ENDPOINTS = ("token_endpoint", "revocation_endpoint", "introspection_endpoint",
                        "pushed_authorization_request_endpoint", "device_authorization_endpoint")


def _issuer_only(settings) -> bool:
    return settings.get("tokens.client_assertion_audience") == "issuer"


def key_set(jwks: dict) -> jwk.KeySet:
    return jwk.KeySet.import_key_set(jwks)


def key_resolver(client):
    """What joserfc verifies a JWS of `client`'s with (an assertion, a request object): its keys,
    asked for with the `kid` the JWS names, so that the keys published at a jwks_uri are fetched
    again when the client rotated to a new one (idp.oidc.client_jwks). KeysUnavailable, when
    they cannot be had, comes out of joserfc's decode as it is."""
    return lambda signed: client.assertion_keys(wanted_kid=signed.headers().get("kid"))


def subject(form) -> str | None:
    """The `sub` of a request's client assertion, read without verifying anything (None when there
    is none, or it cannot be read): which client it claims to be."""
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        return None
    try:
        _headers, claims = PrivateKeyJwt().extract_assertion(form["client_assertion"])
    except InvalidClientError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def is_request_object(header: dict, claims: dict) -> bool:
    """Whether a JWT signed by a client's keys is an authorization request object (RFC 9101):
    typed as one, or carrying the request's own parameters. Signed by the same keys, for the same
    audience (the issuer), such an object travels in the browser's address bar: taken as an
    assertion, whoever saw it could authenticate as the client (RFC 9101 10.8, cross-JWT confusion)."""
    return header.get("typ") == "oauth-authz-req+jwt" or not _REQUEST_PARAMETERS.isdisjoint(claims)


# Parameters only an authorization request has: never in an assertion (RFC 7523 3 names its
# claims). (Not scope nor client_id: libraries put them in JWTs of other kinds.)
_REQUEST_PARAMETERS = frozenset({"response_type", "redirect_uri", "state", "nonce", "code_challenge",
                                 "response_mode", "prompt"})


# ---------------------------------------------------------------------------- single use

def spend(client_id: str, jti: str, expires_at: float) -> bool:
    """Record that this client used this jti; False when it already had (a replay). One
    statement on its own connection, committed before this returns: whatever the request does
    next, the assertion is spent."""
    moment = datetime.fromtimestamp(expires_at, timezone.utc).replace(tzinfo=None)
    return record_once(ClientAssertion.__table__, {"client_id": client_id, "jti_hash": sha256_hex(jti),
                                                   "expires_at": moment})


# ---------------------------------------------------------------------------- the method

class PrivateKeyJwt(JWTBearerClientAssertion):
    """The `private_key_jwt` client authentication method, registered on the authorization server."""

    CLIENT_AUTH_METHOD = METHOD

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)

    def __call__(self, query_client, request):
        form = request.form
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return None  # not this method: the next one is tried
        try:
            named = form.get("client_id")
            if named and named != subject(form):
                # RFC 7521 4.2: a client_id sent along must name the assertion's own client.
                # Checked first: such a request spends no jti.
                raise InvalidClientError(description="client_id names another client than the assertion.")
            return super().__call__(query_client, request)
        except InvalidClientError as refused:
            # 401, as for a wrong secret (RFC 6749 5.2); Authlib's own refusals here say 400.
            refused.status_code = 401
            raise

    def get_audiences(self):
        """This server, by its issuer, or (unless `tokens.client_assertion_audience` is "issuer")
        by the URL of an endpoint that takes the assertion."""
        settings = current_app.extensions["idp.settings"]
        issuer = settings.issuer
        if _issuer_only(settings):
            return [issuer]
        return [issuer, *(urls.at(issuer, name) for name in _ASSERTION_ENDPOINTS)]

    def resolve_client_public_key(self, client):
        if not client.has_keys():  # a client with a secret, or a public one: no key of its verifies anything
            raise InvalidClientError(description="The client does not authenticate with private_key_jwt.")
        return key_resolver(client)

    def process_assertion_claims(self, assertion, resolve_key):
        """Authlib's check, with the algorithms named: the library's default list leaves out the
        stronger ones (ES384, PS256, EdDSA...), and never may an HMAC or `none` pass."""
        from idp.oidc.client_jwks import KeysUnavailable

        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(SIGNING_ALGS))
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidClientError(description="The client assertion's signature does not verify.") from error
        except KeysUnavailable:
            raise InvalidClientError(description="The client's keys could not be fetched from its jwks_uri.") from None
        if is_request_object(token.header, token.claims):
            raise InvalidClientError(description="An authorization request object is no client assertion.")
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims):
        """Authlib's claim checks (iss = sub, aud, exp, a jti not used before), after two of ours,
        which must come first because the jti's check spends it: the assertion expires within
        MAX_LIFETIME, and its jti is a string."""
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp > time.time() + MAX_LIFETIME + LEEWAY:
            raise InvalidClientError(description=f"The client assertion must expire within {MAX_LIFETIME} seconds.")
        if "jti" in claims and (not isinstance(claims["jti"], str) or not claims["jti"]):
            raise InvalidClientError(description="The client assertion's jti must be a non-empty string.")
        audience = claims.get("aud")
        if _issuer_only(current_app.extensions["idp.settings"]) and not isinstance(audience, str):
            # An array naming this server among others is what an audience injection sends.
            raise InvalidClientError(description="The client assertion's aud must be the issuer, as one string.")
        if isinstance(audience, list) and not all(isinstance(a, str) and a in self.get_audiences() for a in audience):
            # The same attack, where this server's endpoints are audiences too: ours only, then.
            raise InvalidClientError(description="The client assertion's aud names another party than this server.")
        super().verify_claims(claims)

    def validate_jti(self, claims, jti):
        return spend(claims["sub"], jti, claims["exp"])
