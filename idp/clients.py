"""Registered clients (relying parties): registering one, changing it, a new secret, retiring it.

The `idp client` commands (and `idp demo seed`) go through these functions, so that a client
is checked by the same rules however it is made or changed, and every change is audited with
the registration it leaves (`client_settings`). A refusal is a ClientRefused whose message says
what is wrong, for people (the `idp` command prints it as its one line).

Secrets are 256-bit random values shown once and stored as SHA-256 only. A client registered
with a JWK Set has no secret at all: it signs its requests' assertions with its own private
keys (private_key_jwt, idp.oidc.client_assertion), registered with it (replaced with
`update`) or published at its `jwks_uri` (idp.oidc.client_jwks). A
client's way of authenticating (a secret, keys, none when public) is chosen when it is
registered: another way is a new registration. A removed client
takes with it everything that let it act: its authorization codes, tokens, remembered
consents, and the logins in progress for it (they end on the "expired" page).

Workers keep the clients they read for `tokens.client_cache_ttl` seconds (idp.oidc.server
ClientCache, default 5): for that long after a change, a worker that read the client before
may still go by the old registration: accept the old secret, the old redirect URIs, or the
removed client at /authorize and for client_credentials (a token issued in that window
outlives the removal until it expires). A new secret works at once (a worker whose cached copy
refuses it reads the client again).

Everything happens in the caller's transaction; the caller commits.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, select, update

from idp import audit, token_revocation
from idp.db import db, utcnow
from idp.login.transaction import TERMINAL
from idp.models import (AuthorizationCode, Client, ConsentGrant, DeviceAuthorization, LoginTransaction, PushedRequest,
                        SessionClient, Token)
from idp.oidc import private_use_schemes
from idp.oidc.client_assertion import JwksRefused, public_jwks, thumbprints
from idp.security.origins import LOOPBACK_HOSTS, browser_origin, is_ip_address
from idp.security.text import name_problem, storable
from idp.security.tokens import random_token, sha256_hex

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"  # RFC 8628 (idp.oidc.device_flow)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", DEVICE_CODE)
# What an operator may type for a grant type with a long registered name.
GRANT_TYPE_ALIASES = {"device_code": DEVICE_CODE}
DEFAULT_GRANT_TYPES = ("authorization_code", "refresh_token")
ID_TOKEN_ALGS = ("ES256", "RS256")
MAX_NAME_LENGTH = 200
# A registered URI (redirect, post-logout, back-channel logout, jwks_uri) is one line an operator
# reads in `idp client list` and an admin in the audit log: far longer than any real one (they are
# matched exactly, so nothing is gained by more) is a mistake, or an attack on whoever prints it.
MAX_URI_LENGTH = 2000
# Redirect URIs (and post-logout ones) per client: a client's few environments and loopback
# ports, with room to spare; each is checked at every authorization request.
MAX_URIS_PER_CLIENT = 50


class ClientRefused(ValueError):
    """Bad input for a client, or a change it cannot take; the message says what, for people."""


class UnknownClient(ClientRefused):
    """No client has this client_id."""


@dataclass(frozen=True)
class Registration:
    """What an operator chooses about a client: everything but its id, secret and creation time."""

    name: str
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = DEFAULT_GRANT_TYPES
    public: bool = False
    first_party: bool = False
    id_token_alg: str | None = None  # None: the configured default (tokens.default_id_token_alg)
    backchannel_logout_uri: str | None = None  # None: the client is not told of logouts
    # None: no frame of the client's is loaded at sign-out (idp.oidc.frontchannel)
    frontchannel_logout_uri: str | None = None
    # private_key_jwt: the client's public keys (a JWK Set, or its JSON text). None: a secret
    # (or nothing, when public).
    jwks: dict | str | None = None
    # Or the URL where the client publishes them (idp.oidc.client_jwks).
    jwks_uri: str | None = None
    # RFC 9126: authorization requests only as pushed requests (POST /oauth/par).
    require_pushed_authorization_requests: bool = False
    # RFC 9449 5.2: tokens only with a DPoP proof.
    dpop_bound_access_tokens: bool = False


# --------------------------------------------------------------------------- checks

# A host name's label as browsers resolve them: a DNS label, underscores allowed (container names).
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def check_redirect_uri(uri: str, what: str = "redirect URI", *, public: bool | None = None) -> str:
    """An absolute http(s) URI with a host a browser can reach, no credentials and no fragment
    (OAuth 2.0 section 3.1.2); in production https, but for a loopback address (RFC 9700 2.1,
    RFC 8252 7.3: a native app's local server), at most MAX_URI_LENGTH characters of printable
    text. Raises ClientRefused.

    `public`, for a client's redirect and post-logout redirect URIs (None for the URIs only a
    server answers: logout notifications, keys): whether the client is public, whose URIs may
    also be a native app's private-use scheme (RFC 8252 7.1, idp.oidc.private_use_schemes)."""
    if len(uri) > MAX_URI_LENGTH:
        raise ClientRefused(f"invalid {what} {_quoted(uri)}: longer than {MAX_URI_LENGTH} characters")
    if not storable(uri):
        raise ClientRefused(f"invalid {what} {_quoted(uri)}: not UTF-8 text")
    if any(ch.isspace() for ch in uri):
        raise ClientRefused(f"invalid {what} {_quoted(uri)}: must not contain spaces")
    if not uri.isprintable():
        # Before urlsplit, which drops some of them (tabs, line breaks) from what it parses. An
        # escape sequence kept here would reach the terminal of whoever lists the clients.
        raise ClientRefused(f"invalid {what} {_quoted(uri)}: must not contain control characters")
    if public is not None and private_use_schemes.looks_like_one(uri):
        return _checked_private_use_uri(uri, what, public)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise ClientRefused(f"invalid {what} {uri!r}: not a URI") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientRefused(f"invalid {what} {uri!r}: must be an absolute http(s) URI")
    if parts.fragment or uri.endswith("#"):
        raise ClientRefused(f"invalid {what} {uri!r}: must not contain a fragment")
    if "@" in parts.netloc:
        # https://app.example@evil.example/ reads as app.example to a person and goes to evil.example.
        raise ClientRefused(f"invalid {what} {uri!r}: must not contain a user name or password")
    if not _reachable_host(parts.hostname):
        raise ClientRefused(f"invalid {what} {uri!r}: {parts.hostname!r} is not a host name or IP address "
                            "(an internationalised name goes in its xn-- form)")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS and _production():
        raise ClientRefused(f"invalid {what} {uri!r}: production accepts http only for localhost, 127.0.0.1 "
                            "and [::1]: use https")
    return uri


def _checked_private_use_uri(uri: str, what: str, public: bool) -> str:
    """A URI of a scheme other than http(s), for a client's redirect or post-logout redirect URI:
    a public client's private-use one, else ClientRefused. (Before urlsplit, which would lower-case
    the scheme and read a port in `com.example.app://host:x`.)"""
    problem = private_use_schemes.problem(uri)
    if not public:
        hint = " (a private-use scheme is a native app's: register it --public)" if problem is None else ""
        raise ClientRefused(f"invalid {what} {_quoted(uri)}: must be an absolute http(s) URI{hint}")
    if problem is not None:
        raise ClientRefused(f"invalid {what} {_quoted(uri)}: {problem}")
    return uri


def _quoted(uri: str) -> str:
    """A refused URI as its message quotes it: escaped (repr), and cut short, so that the refusal
    stays one readable line whatever was given."""
    return repr(uri) if len(uri) <= 80 else f"{uri[:80]!r}... ({len(uri)} characters)"


def _checked_uris(uris, what: str, public: bool) -> tuple[str, ...]:
    """`uris` without duplicates, each checked by check_redirect_uri, at most MAX_URIS_PER_CLIENT
    of them (counted first, so that a flood is refused before anything is parsed)."""
    unique = tuple(dict.fromkeys(uris))
    if len(unique) > MAX_URIS_PER_CLIENT:
        raise ClientRefused(f"at most {MAX_URIS_PER_CLIENT} {what}s per client ({len(unique)} given)")
    return tuple(check_redirect_uri(uri, what, public=public) for uri in unique)


def _reachable_host(host: str) -> bool:
    """A DNS name (letters, digits, hyphens; an internationalised name in its xn-- form) or an IP literal:
    never a wildcard or a pattern, which exact matching would keep as text no browser is sent to."""
    return is_ip_address(host) or all(_HOST_LABEL.fullmatch(label) for label in host.rstrip(".").split("."))


def _production() -> bool:
    try:
        return current_app.extensions["idp.settings"].production
    except (RuntimeError, KeyError):  # no app (a unit test of the check alone): development rules
        return False


def checked(registration: Registration) -> Registration:
    """The registration with its values normalised (name stripped, duplicates dropped, the default
    grant types and ID token algorithm filled in), or ClientRefused saying what is wrong with it.
    Adding a client and changing one both pass here: a change is checked as the whole
    registration it leaves (a public client cannot be given client_credentials)."""
    name = (registration.name or "").strip()
    problem = name_problem(name, MAX_NAME_LENGTH)
    if problem:
        raise ClientRefused(f"the client name {problem}")
    grants = tuple(dict.fromkeys(GRANT_TYPE_ALIASES.get(grant, grant)
                                 for grant in registration.grant_types or DEFAULT_GRANT_TYPES))
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise ClientRefused(f"unknown grant type {grant!r} (choose from {', '.join(GRANT_TYPES)}; "
                                f"device_code for {DEVICE_CODE})")
    if "refresh_token" in grants and "authorization_code" not in grants and DEVICE_CODE not in grants:
        raise ClientRefused("grant type refresh_token needs authorization_code or device_code")
    if registration.public and "client_credentials" in grants:
        raise ClientRefused("a public client cannot use client_credentials (it has no secret)")
    uris = _checked_uris(registration.redirect_uris, "redirect URI", registration.public)
    if "authorization_code" in grants and not uris:
        raise ClientRefused("at least one --redirect-uri is required for authorization_code")
    logout_uris = _checked_uris(registration.post_logout_redirect_uris, "post-logout redirect URI",
                                registration.public)
    # None is "not given" (the default); an empty string is refused like any other wrong value,
    # never taken for the default: `--id-token-alg ''` did switch a client from RS256 to ES256.
    alg = registration.id_token_alg
    if alg is None:
        alg = current_app.extensions["idp.settings"].get("tokens.default_id_token_alg") or "ES256"
    alg = alg.upper()
    if alg not in ID_TOKEN_ALGS:
        raise ClientRefused(f"unsupported ID token algorithm {alg!r} (choose from {', '.join(ID_TOKEN_ALGS)})")
    backchannel = (check_redirect_uri(registration.backchannel_logout_uri, "back-channel logout URI")
                   if registration.backchannel_logout_uri is not None else None)
    frontchannel = (_checked_frontchannel_uri(registration.frontchannel_logout_uri, uris)
                    if registration.frontchannel_logout_uri is not None else None)
    jwks = None
    if registration.jwks is not None:
        if registration.public:
            raise ClientRefused("a public client has no credentials: --jwks is for confidential clients")
        try:
            jwks = public_jwks(registration.jwks)
        except JwksRefused as refused:
            raise ClientRefused(str(refused)) from None
    jwks_uri = None
    if registration.jwks_uri is not None:  # ("" is refused: it did register a client with a secret)
        if registration.public:
            raise ClientRefused("a public client has no credentials: --jwks-uri is for confidential clients")
        if jwks is not None:
            raise ClientRefused("give the client's keys with --jwks or --jwks-uri, not both")
        jwks_uri = check_redirect_uri(registration.jwks_uri, "jwks_uri")
    return dataclasses.replace(registration, name=name, grant_types=grants, redirect_uris=uris,
                               post_logout_redirect_uris=logout_uris, id_token_alg=alg,
                               backchannel_logout_uri=backchannel, frontchannel_logout_uri=frontchannel,
                               jwks=jwks, jwks_uri=jwks_uri)


def _checked_frontchannel_uri(uri: str, redirect_uris: tuple[str, ...]) -> str:
    """A front-channel logout URI is checked as a redirect URI is, and must be at the origin of
    one of the client's redirect URIs (Front-Channel Logout 1.0, section 2: "the domain, port, and
    scheme of this URL MUST be the same as that of a registered Redirection URI value"): our
    signed-out page frames it, so it must be the client's own page, not one it names."""
    uri = check_redirect_uri(uri, "front-channel logout URI")
    if browser_origin(uri) not in {browser_origin(registered) for registered in redirect_uris}:
        raise ClientRefused(f"invalid front-channel logout URI {uri!r}: its scheme, host and port must be "
                            "those of one of the client's redirect URIs")
    return uri


def new_client_id() -> str:
    """144 random bits, URL-safe, never beginning with "-": an id that did read as an option on
    the command line (`idp client show -dzG...`), and in many another tool a client's developer uses."""
    while True:
        client_id = random_token(18)
        if not client_id.startswith("-"):
            return client_id


# --------------------------------------------------------------------------- reading

def find(client_id: str, *, for_update: bool = False) -> Client:
    """The client with this client_id, else UnknownClient. `for_update` locks its row till the
    caller's transaction ends (PostgreSQL), so that two changes to one client come one after
    the other: a secret is not rotated on a client being removed."""
    client_id = (client_id or "").strip()
    query = select(Client).where(Client.client_id == client_id)
    found = db.session.scalar(query.with_for_update() if for_update else query) if storable(client_id) else None
    if found is None:
        raise UnknownClient(f"unknown client {client_id!r}")
    return found


def all_clients() -> list[Client]:
    """Every registered client, oldest first."""
    return list(db.session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def registration_of(client: Client) -> Registration:
    return Registration(name=client.name, redirect_uris=tuple(client.redirect_uris),
                        post_logout_redirect_uris=tuple(client.post_logout_redirect_uris),
                        grant_types=tuple(client.grant_types), public=client.public,
                        first_party=client.first_party, id_token_alg=client.id_token_alg,
                        backchannel_logout_uri=client.backchannel_logout_uri,
                        frontchannel_logout_uri=client.frontchannel_logout_uri, jwks=client.jwks,
                        jwks_uri=client.jwks_uri,
                        require_pushed_authorization_requests=client.require_pushed_authorization_requests,
                        dpop_bound_access_tokens=client.dpop_bound_access_tokens)


def client_settings(client: Client) -> dict:
    """A client's registration as its audit events record it and `idp client show` prints it:
    everything that decides who may obtain tokens through it and how (an admin reading the log
    must be able to tell what was created or changed), never its secret. The accepted
    authentication methods are asked of the protocol code; keys are named by their RFC 7638
    thumbprints (`jwk_thumbprints`, empty for a client without keys)."""
    from idp.oidc.adapters import AUTH_METHODS, OAuthClient

    protocol = OAuthClient(client)
    return {"client_id": client.client_id, "name": client.name, "public": client.public,
            "first_party": client.first_party,
            "token_endpoint_auth_methods": [m for m in AUTH_METHODS
                                            if protocol.check_endpoint_auth_method(m, "token")],
            "grant_types": list(client.grant_types), "redirect_uris": list(client.redirect_uris),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris), "scope": client.scope,
            "id_token_alg": client.id_token_alg, "backchannel_logout_uri": client.backchannel_logout_uri,
            "frontchannel_logout_uri": client.frontchannel_logout_uri,
            "jwk_thumbprints": thumbprints(client.jwks), "jwks_uri": client.jwks_uri,
            "require_pushed_authorization_requests": bool(client.require_pushed_authorization_requests),
            "dpop_bound_access_tokens": bool(client.dpop_bound_access_tokens)}


# --------------------------------------------------------------------------- changes

def register(registration: Registration, *, actor: str = "cli") -> tuple[Client, str | None]:
    """A new client (checked first), audited as `client.created`; returns (row, its secret, or
    None for a public client or one with keys). Only the secret's SHA-256 is stored. Raises
    ClientRefused."""
    registration = checked(registration)
    secret = None if registration.public or registration.jwks or registration.jwks_uri else random_token(32)
    client = Client(client_id=new_client_id(), secret_hash=sha256_hex(secret) if secret else None,
                    name=registration.name, redirect_uris=list(registration.redirect_uris),
                    post_logout_redirect_uris=list(registration.post_logout_redirect_uris),
                    grant_types=list(registration.grant_types), public=registration.public,
                    first_party=registration.first_party, id_token_alg=registration.id_token_alg,
                    backchannel_logout_uri=registration.backchannel_logout_uri,
                    frontchannel_logout_uri=registration.frontchannel_logout_uri, jwks=registration.jwks,
                    jwks_uri=registration.jwks_uri,
                    require_pushed_authorization_requests=registration.require_pushed_authorization_requests,
                    dpop_bound_access_tokens=registration.dpop_bound_access_tokens)
    db.session.add(client)
    db.session.flush()
    audit.record("client.created", org_id=None, actor=actor, subject_id=client.id, details=client_settings(client))
    return client, secret


# What `change` may set; a client's type (public or confidential) is not among them: it decides
# whether it has a secret, so a client of the other type is a new registration.
CHANGEABLE = ("name", "redirect_uris", "post_logout_redirect_uris", "grant_types", "first_party", "id_token_alg",
              "backchannel_logout_uri", "frontchannel_logout_uri", "jwks", "jwks_uri",
              "require_pushed_authorization_requests",
              "dpop_bound_access_tokens")


def change(client: Client, *, actor: str = "cli", **given) -> dict:
    """Set the settings given (those of CHANGEABLE; None means "keep"), checked as the whole
    registration they leave; `client.updated` records what changed. Three settings may be
    cleared: `backchannel_logout_uri=""` and `frontchannel_logout_uri=""` (the client is told
    of logouts no more, by that channel) and
    `post_logout_redirect_uris=()` (RP-initiated logout returns nowhere); any other empty value
    is refused as at registration. Returns the changes (`{setting: {"from": ..., "to": ...}}`,
    empty when everything already was so). Raises ClientRefused when nothing is given or the
    result would be refused at registration."""
    unknown = set(given) - set(CHANGEABLE)
    if unknown:
        raise TypeError(f"not a changeable setting: {', '.join(sorted(unknown))}")
    given = {key: value for key, value in given.items() if value is not None}
    if not given:
        raise ClientRefused("nothing to change: give --name, --redirect-uri, --post-logout-redirect-uri, "
                            "--first-party or --third-party, --grant-type, --id-token-alg, "
                            "--backchannel-logout-uri, --frontchannel-logout-uri, --jwks, --jwks-uri, "
                            "--require-par/--no-require-par or "
                            "--require-dpop/--no-require-dpop")
    if ("jwks" in given or "jwks_uri" in given) and not (client.jwks or client.jwks_uri):
        # A secret would have to go, and the client's software change with it: a new registration.
        raise ClientRefused(f"client {client.client_id!r} authenticates with "
                            f"{'nothing (it is public)' if client.public else 'a secret'}: register a new client "
                            "with --jwks or --jwks-uri to use keys")
    for key in ("redirect_uris", "post_logout_redirect_uris", "grant_types"):
        if key in given:
            given[key] = tuple(given[key])
    for cleared in ("backchannel_logout_uri", "frontchannel_logout_uri"):
        if given.get(cleared) == "":
            given[cleared] = None  # cleared: a registration without one
    current = registration_of(client)
    if "jwks" in given:  # keys given inline take the place of a jwks_uri, and the other way round
        current = dataclasses.replace(current, jwks_uri=None)
    if "jwks_uri" in given:
        current = dataclasses.replace(current, jwks=None)
    wanted = checked(dataclasses.replace(current, **given))
    before = client_settings(client)
    client.name, client.first_party, client.id_token_alg = wanted.name, wanted.first_party, wanted.id_token_alg
    client.backchannel_logout_uri, client.jwks, client.jwks_uri = (wanted.backchannel_logout_uri, wanted.jwks,
                                                                   wanted.jwks_uri)
    client.frontchannel_logout_uri = wanted.frontchannel_logout_uri
    client.require_pushed_authorization_requests = wanted.require_pushed_authorization_requests
    client.dpop_bound_access_tokens = wanted.dpop_bound_access_tokens
    client.redirect_uris, client.post_logout_redirect_uris, client.grant_types = (
        list(wanted.redirect_uris), list(wanted.post_logout_redirect_uris), list(wanted.grant_types))
    db.session.flush()
    return record_client_update(client, before, actor=actor)


def record_client_update(client: Client, before: dict, *, actor: str = "cli") -> dict:
    """`client.updated` with what changed (`{setting: {"from": ..., "to": ...}}`), if anything did;
    returns the changes."""
    after = client_settings(client)
    changes = {key: {"from": before[key], "to": value} for key, value in after.items() if before.get(key) != value}
    if changes:
        audit.record("client.updated", org_id=None, actor=actor, subject_id=client.id,
                     details={"client_id": client.client_id, "changes": changes})
    return changes


# The longest an old secret may keep working beside the new one.
MAX_SECRET_GRACE = 30 * 24 * 3600


def rotate_secret(client: Client, *, actor: str = "cli", grace: int = 0) -> str:
    """A new random secret for a confidential client, returned once. The old one stops working
    (after `tokens.client_cache_ttl` seconds at most, see above), or, with `grace` seconds, works
    beside the new one until then, so that the client's servers can be given the new one
    without refusals (a secret kept from an earlier rotation goes: one old secret at most).
    Audited as `client.secret_rotated`, without the secret. Raises ClientRefused for a public
    client, or a grace outside 0 to MAX_SECRET_GRACE."""
    if client.public:
        raise ClientRefused(f"client {client.client_id!r} is public: it has no secret to rotate")
    if client.jwks or client.jwks_uri:
        raise ClientRefused(f"client {client.client_id!r} signs with its own keys (private_key_jwt): it has no "
                            "secret; give it new keys with `idp client update --jwks` (or publish them at its "
                            "jwks_uri)")
    if not 0 <= grace <= MAX_SECRET_GRACE:
        raise ClientRefused(f"the old secret's grace period must be between 0 and {MAX_SECRET_GRACE // 86400} days")
    secret = random_token(32)
    until = utcnow() + timedelta(seconds=grace) if grace else None
    client.previous_secret_hash = client.secret_hash if until else None
    client.previous_secret_expires_at = until
    client.secret_hash = sha256_hex(secret)
    db.session.flush()
    details = {"client_id": client.client_id}
    if until is not None:
        details["previous_secret_expires_at"] = until.replace(microsecond=0).isoformat() + "Z"
    audit.record("client.secret_rotated", org_id=None, actor=actor, subject_id=client.id, details=details)
    return secret


def remove(client: Client, *, actor: str = "cli") -> dict:
    """Delete the client and everything that lets it act: its authorization codes (spent or
    not), its access and refresh tokens, the consents users gave it; its logins in progress
    expire (their next page is the "expired" one, as for any login that ran out of time).
    Audited as `client.removed` with the registration it had and what went with it; returns
    those counts."""
    client_id, row_id, now = client.client_id, client.id, utcnow()
    registration = client_settings(client)
    ended = {
        "codes_deleted": db.session.execute(
            delete(AuthorizationCode).where(AuthorizationCode.client_id == client_id)).rowcount,
        # Repeated until nothing is left: a refresh rotating one of them meanwhile commits its
        # successor where one DELETE's snapshot cannot see it (idp.token_revocation).
        "tokens_deleted": token_revocation.until_none_left(delete(Token).where(Token.client_id == client_id)),
        "consents_deleted": db.session.execute(
            delete(ConsentGrant).where(ConsentGrant.client_id == client_id)).rowcount,
        # A login's authorization request is kept as {"params": {"client_id": ...}, ...}
        # (idp.login.pipeline); one that runs out of time ends on the "expired" page.
        "logins_ended": db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.authz_request[("params", "client_id")].as_string() == client_id,
                   LoginTransaction.state.not_in(TERMINAL), LoginTransaction.expires_at > now)
            .values(expires_at=now)).rowcount,
    }
    # Nobody is left to tell of those sessions' logouts (idp.oidc.backchannel).
    db.session.execute(delete(SessionClient).where(SessionClient.client_id == client_id))
    db.session.execute(delete(PushedRequest).where(PushedRequest.client_id == client_id))
    db.session.execute(delete(DeviceAuthorization).where(DeviceAuthorization.client_id == client_id))
    db.session.delete(client)
    db.session.flush()
    audit.record("client.removed", org_id=None, actor=actor, subject_id=row_id,
                 details={**registration, **ended})
    return ended

