"""Password hashes made by the system an organization moves from (`idp user import`).

People keep their passwords on migration day: the import stores the old system's hash as it
is (nothing is hashed at import), the password step verifies it by its own algorithm, and the
first login that proves it replaces it with argon2id (idp.login.steps.password, where a
change of argon2 parameters is rehashed too). Until then a login costs that algorithm's time,
not argon2id's.

Accepted (`importable` says why anything else is refused):

- argon2id and argon2i PHC strings (`$argon2id$v=19$m=...,t=...,p=...$SALT$HASH`), as
  argon2-cffi writes and reads them; Django's `argon2$argon2id$...` too (its prefix dropped);
- bcrypt (`$2a$`, `$2b$`, `$2y$`; Django's `bcrypt$$2b$...` too, its prefix dropped);
- Django's bcrypt_sha256 (`bcrypt_sha256$$2b$...`, its BCryptSHA256PasswordHasher: bcrypt of the
  password's SHA-256 in hex), stored as Django writes it;
- Django and authentik's PBKDF2 (`pbkdf2_sha256$ITERATIONS$SALT$BASE64HASH`, `pbkdf2_sha1$...`),
  stored as Django writes it;
- Keycloak's PBKDF2 (providers `pbkdf2`, `pbkdf2-sha256`, `pbkdf2-sha512`), stored in a
  PHC-like string of our own, `$pbkdf2-sha256$i=ITERATIONS$SALT$HASH`, salt and derived key in
  standard base64 as Keycloak's export holds them (`keycloak_pbkdf2`).

Refused: unsalted digests (hex MD5, SHA-1, SHA-256, SHA-512, Django's `md5$`/`sha1$`/
`unsalted_*`): a table of them falls to a dictionary in hours, and keeping them would be
keeping that. And parameters no login should pay for (a bcrypt cost of 31, a billion PBKDF2
iterations, gigabytes of argon2 memory): each is one login's CPU or memory, for every guess.

Verification compares in constant time (`hmac.compare_digest`, bcrypt's and argon2's own).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# What the password step asks of every stored hash: an argon2 one is the provider's own, any
# other is foreign (one prefix check on the hot path, nothing more).
ARGON2_PREFIX = "$argon2"

# Bounds on what an imported hash may make a login pay. PBKDF2: Django 5.2 writes 1,000,000
# iterations of SHA-256 and Keycloak 600,000 (pbkdf2-sha256) or 210,000 (sha512); below 1,000
# a salted hash is little better than an unsalted one.
PBKDF2_ITERATIONS = (1_000, 5_000_000)
BCRYPT_COST = (4, 15)              # 15: about 2 s of one core; 10 to 12 is usual
ARGON2_MAX_MEMORY_KIB = 256 * 1024  # Keycloak's default is 7 MiB, OWASP's 19 to 46 MiB
ARGON2_MAX_TIME_COST = 20
ARGON2_MAX_PARALLELISM = 16

_PBKDF2_DIGESTS = {"sha1": 20, "sha256": 32, "sha512": 64}  # digest name -> its output in bytes
_DJANGO_PBKDF2 = re.compile(r"^pbkdf2_(sha1|sha256)\$(\d{1,10})\$([^$]{1,128})\$([A-Za-z0-9+/=]{1,200})$")
_OWN_PBKDF2 = re.compile(r"^\$pbkdf2-(sha1|sha256|sha512)\$i=(\d{1,10})\$([A-Za-z0-9+/=]{1,200})\$([A-Za-z0-9+/=]{1,200})$")
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_BCRYPT_SHA256 = "bcrypt_sha256$"  # Django's prefix, kept: the password is pre-hashed
_HEX_DIGEST = {32: "MD5", 40: "SHA-1", 56: "SHA-224", 64: "SHA-256", 96: "SHA-384", 128: "SHA-512"}
_UNSALTED_DJANGO = ("md5$", "sha1$", "unsalted_md5$", "unsalted_sha1$", "crypt$")


class HashRefused(ValueError):
    """An imported hash that is not accepted; the message says why (one line, for the operator)."""


def keycloak_pbkdf2(algorithm: str, iterations: int, salt_b64: str, value_b64: str) -> str:
    """The stored form of a Keycloak PBKDF2 credential: `algorithm` as Keycloak names its provider
    (`pbkdf2` is SHA-1), salt and derived key as base64 as its export holds them. Checked by
    `importable` like any other."""
    digest = {"pbkdf2": "sha1", "pbkdf2-sha1": "sha1", "pbkdf2-sha256": "sha256",
              "pbkdf2-sha512": "sha512"}.get(algorithm)
    if digest is None:
        raise HashRefused(f"unsupported Keycloak password algorithm {algorithm!r}")
    return f"$pbkdf2-{digest}$i={iterations}${salt_b64}${value_b64}"


def keycloak_argon2(kind: str, version: str, memory: int, iterations: int, parallelism: int,
                    salt_b64: str, value_b64: str) -> str:
    """The PHC string of a Keycloak argon2 credential (its default provider since Keycloak 24):
    `kind` "id" or "i", `version` "1.3" (19) or "1.0" (16), salt and hash as its export's
    base64. argon2-cffi then verifies it as any argon2 hash."""
    versions = {"1.3": 19, "1.0": 16}
    if kind not in ("id", "i") or version not in versions:
        raise HashRefused(f"unsupported Keycloak argon2 type {kind!r} version {version!r}")
    salt, value = _b64(salt_b64, "salt"), _b64(value_b64, "hash")

    def phc(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=")

    return f"$argon2{kind}$v={versions[version]}$m={memory},t={iterations},p={parallelism}${phc(salt)}${phc(value)}"


def importable(text: object) -> str:
    """The hash to store for `text` (an accepted format, normalised: Django's argon2 and bcrypt
    prefixes dropped), or HashRefused saying why not."""
    if not isinstance(text, str) or not text:
        raise HashRefused("password_hash must be a non-empty string")
    if len(text) > 512 or not text.isascii() or not text.isprintable():
        raise HashRefused("password_hash is not a password hash (too long, or not printable ASCII)")
    if text.startswith("argon2$argon2"):
        text = text[len("argon2"):]
    elif text.startswith("bcrypt$$2"):
        text = text[len("bcrypt$"):]
    if text.startswith(ARGON2_PREFIX):
        _check_argon2(text)
    elif text.startswith("$2"):
        _check_bcrypt(text)
    elif text.startswith(_BCRYPT_SHA256 + "$2"):
        _check_bcrypt(text[len(_BCRYPT_SHA256):])
    elif text.startswith("pbkdf2_"):
        _check_django_pbkdf2(text)
    elif text.startswith("$pbkdf2-"):
        _check_own_pbkdf2(text)
    else:
        raise HashRefused(_unknown(text))
    return text


def _unknown(text: str) -> str:
    if len(text) in _HEX_DIGEST and re.fullmatch(r"[0-9a-fA-F]+", text):
        return (f"an unsalted {_HEX_DIGEST[len(text)]} hex digest is not accepted (it falls to a dictionary "
                "in hours): leave password_hash out, and the user sets a password by the reset link")
    if text.startswith(_UNSALTED_DJANGO) or text.startswith(("{SHA}", "{MD5}", "{SSHA}", "{SMD5}")):
        return (f"a {text.split('$')[0].split('}')[0].lstrip('{')} hash is too weak to import: leave password_hash "
                "out, and the user sets a password by the reset link")
    return ("unknown password hash format (accepted: argon2id/argon2i PHC strings, bcrypt $2a$/$2b$/$2y$, "
            "Django pbkdf2_sha256/pbkdf2_sha1/bcrypt_sha256, $pbkdf2-sha256$/$pbkdf2-sha512$ from Keycloak)")


def _check_argon2(text: str) -> None:
    try:
        found = extract_parameters(text)
    except (InvalidHashError, ValueError):
        raise HashRefused("password_hash is not a valid argon2 PHC string") from None
    if found.type not in (Type.ID, Type.I):
        raise HashRefused("argon2d hashes are not accepted (argon2id or argon2i only)")
    # A string without `v=` (Django 1.10's) is argon2's first version, as argon2 itself reads it
    # and Django verifies it; argon2-cffi's extract_parameters reports it as 18, none written so.
    if found.version not in (16, 19) and not (found.version == 18 and "$v=" not in text):
        raise HashRefused(f"unknown argon2 version {found.version}")
    if not (1 <= found.time_cost <= ARGON2_MAX_TIME_COST and 8 <= found.memory_cost <= ARGON2_MAX_MEMORY_KIB
            and 1 <= found.parallelism <= ARGON2_MAX_PARALLELISM):
        raise HashRefused(f"argon2 parameters out of range (t at most {ARGON2_MAX_TIME_COST}, m at most "
                          f"{ARGON2_MAX_MEMORY_KIB} KiB, p at most {ARGON2_MAX_PARALLELISM})")
    if found.salt_len < 8 or not 16 <= found.hash_len <= 128:
        raise HashRefused("argon2 salt shorter than 8 bytes, or a hash not 16 to 128 bytes long")


def _check_bcrypt(text: str) -> None:
    match = _BCRYPT.match(text)
    if not match:
        raise HashRefused("password_hash is not a valid bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)")
    cost = int(match.group(1))
    if not BCRYPT_COST[0] <= cost <= BCRYPT_COST[1]:
        raise HashRefused(f"bcrypt cost {cost} out of range ({BCRYPT_COST[0]} to {BCRYPT_COST[1]})")


def _check_iterations(iterations: int) -> None:
    if not PBKDF2_ITERATIONS[0] <= iterations <= PBKDF2_ITERATIONS[1]:
        raise HashRefused(f"PBKDF2 iterations {iterations} out of range "
                          f"({PBKDF2_ITERATIONS[0]:,} to {PBKDF2_ITERATIONS[1]:,})")


def _check_django_pbkdf2(text: str) -> None:
    match = _DJANGO_PBKDF2.match(text)
    if not match:
        raise HashRefused("password_hash is not a valid Django pbkdf2_sha256/pbkdf2_sha1 hash")
    digest, iterations, salt, value = match.groups()
    _check_iterations(int(iterations))
    if not salt.isprintable() or len(_b64(value, "hash")) != _PBKDF2_DIGESTS[digest]:
        raise HashRefused(f"the pbkdf2_{digest} hash is not {_PBKDF2_DIGESTS[digest]} bytes of base64")


def _check_own_pbkdf2(text: str) -> None:
    match = _OWN_PBKDF2.match(text)
    if not match:
        raise HashRefused("password_hash is not a valid $pbkdf2-sha256$i=N$SALT$HASH string")
    _digest, iterations, salt, value = match.groups()
    _check_iterations(int(iterations))
    if len(_b64(salt, "salt")) < 8 or not 16 <= len(_b64(value, "hash")) <= 128:
        raise HashRefused("a PBKDF2 salt shorter than 8 bytes, or a derived key not 16 to 128 bytes long")


def _b64(text: str, what: str) -> bytes:
    """Standard base64, padding optional."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise HashRefused(f"the {what} is not valid base64") from None


# --------------------------------------------------------------------------- at login

def verify(stored: str, password: str) -> bool:
    """Whether `password` matches the foreign hash `stored` (one `importable` accepted, other than
    argon2: every argon2 hash, argon2i included, is idp.security.passwords' own to verify). False
    for anything it cannot read, never an exception."""
    try:
        if stored.startswith("$2"):
            import bcrypt  # (only a login with an imported bcrypt hash needs it)

            # bcrypt reads 72 bytes of a password and the system that made the hash read no more.
            return bcrypt.checkpw(password.encode("utf-8")[:72], stored.encode("ascii"))
        if stored.startswith(_BCRYPT_SHA256):
            import bcrypt

            # Django's BCryptSHA256PasswordHasher: bcrypt of the hex SHA-256 (64 bytes: nothing cut).
            prehashed = binascii.hexlify(hashlib.sha256(password.encode("utf-8")).digest())
            return bcrypt.checkpw(prehashed, stored[len(_BCRYPT_SHA256):].encode("ascii"))
        match = _DJANGO_PBKDF2.match(stored)
        if match:
            digest, iterations, salt, value = match.groups()
            return _pbkdf2_matches(digest, password, salt.encode("utf-8"), int(iterations), base64.b64decode(value))
        match = _OWN_PBKDF2.match(stored)
        if match:
            digest, iterations, salt, value = match.groups()
            return _pbkdf2_matches(digest, password, _b64(salt, "salt"), int(iterations), _b64(value, "hash"))
    except (VerifyMismatchError, VerificationError, InvalidHashError, HashRefused, ValueError, binascii.Error):
        return False
    return False


def _pbkdf2_matches(digest: str, password: str, salt: bytes, iterations: int, expected: bytes) -> bool:
    # Keycloak derives as many bits as it stored (its keySize: 512 by default, 256 for
    # pbkdf2-sha256 since Keycloak 24), Django one digest's worth; both read the password as UTF-8
    # (Keycloak's optional NUL padding to a minimum length changes nothing: HMAC pads its key
    # with zeros anyway).
    derived = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations, dklen=len(expected))
    return hmac.compare_digest(derived, expected)


def describe(stored: str) -> dict | None:
    """The scheme and cost of a foreign hash, for the audit event of its upgrade (public: written
    in the hash itself); None for a string none of the schemes reads."""
    if stored.startswith("$2"):
        match = _BCRYPT.match(stored)
        return {"type": "bcrypt", "cost": int(match.group(1))} if match else None
    if stored.startswith(_BCRYPT_SHA256):
        match = _BCRYPT.match(stored[len(_BCRYPT_SHA256):])
        return {"type": "bcrypt_sha256", "cost": int(match.group(1))} if match else None
    match = _DJANGO_PBKDF2.match(stored) or _OWN_PBKDF2.match(stored)
    if match:
        return {"type": f"pbkdf2_{match.group(1)}", "iterations": int(match.group(2))}
    return None
