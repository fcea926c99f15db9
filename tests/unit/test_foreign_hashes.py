"""idp.security.foreign_hashes: which imported hashes are accepted, why the others are refused, and
that each accepted scheme verifies its own password only (the login's side is
tests/integration/test_user_import.py)."""
from __future__ import annotations

import base64
import hashlib

import bcrypt
import pytest
from argon2 import low_level

from idp.security import foreign_hashes
from idp.security.foreign_hashes import HashRefused, importable, keycloak_argon2, keycloak_pbkdf2, verify


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("text, reason", [
    (hashlib.md5(b"pw").hexdigest(), "unsalted MD5 hex digest"),
    (hashlib.sha1(b"pw").hexdigest(), "unsalted SHA-1 hex digest"),
    (hashlib.sha256(b"pw").hexdigest().upper(), "unsalted SHA-256 hex digest"),
    (hashlib.sha512(b"pw").hexdigest(), "unsalted SHA-512 hex digest"),
    ("md5$salt$" + hashlib.md5(b"saltpw").hexdigest(), "too weak"),
    ("unsalted_md5$" + hashlib.md5(b"pw").hexdigest(), "too weak"),
    ("{SSHA}" + _b64(b"x" * 24), "too weak"),
    ("$1$saltsalt$abcdefghijklmnopqrstuv", "unknown password hash format"),
    ("", "non-empty string"),
    (None, "non-empty string"),
    ("$2b$31$" + "a" * 53, "bcrypt cost 31 out of range"),
    ("$2x$10$" + "a" * 53, "not a valid bcrypt hash ($2a$, $2b$ or $2y$"),
    ("$2b$10$short", "not a valid bcrypt hash"),
    ("pbkdf2_sha256$999$salt$" + _b64(b"x" * 32), "iterations 999 out of range"),
    ("pbkdf2_sha256$600000$salt$" + _b64(b"x" * 20), "not 32 bytes"),
    ("pbkdf2_md5$600000$salt$" + _b64(b"x" * 16), "not a valid Django pbkdf2_sha256/pbkdf2_sha1 hash"),
    ("$pbkdf2-sha256$i=27500$not base64!$" + _b64(b"x" * 32), "not a valid"),
    ("$pbkdf2-sha256$i=27500$" + _b64(b"short") + "$" + _b64(b"x" * 32), "salt shorter than 8 bytes"),
    (low_level.hash_secret(b"pw", b"saltsalt", time_cost=1, memory_cost=64, parallelism=1, hash_len=32,
                           type=low_level.Type.D).decode(), "argon2d"),
    ("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43, "out of range"),
    ("$argon2id$garbage", "not a valid argon2"),
    ("pbkdf2_sha256$600000$sa\x00lt$" + _b64(b"x" * 32), "not printable ASCII"),
])
def test_refused_with_a_reason(text, reason):
    with pytest.raises(HashRefused) as refused:
        importable(text)
    assert reason in str(refused.value)


def test_each_accepted_scheme_verifies_its_password_and_no_other():
    password = "pässwörd 🙂"
    salt = b"0123456789abcdef"
    made = {
        "bcrypt": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
        "django": "pbkdf2_sha256$1000$NaCl$" + _b64(hashlib.pbkdf2_hmac("sha256", password.encode(), b"NaCl", 1000)),
        "django_sha1": "pbkdf2_sha1$1000$NaCl$" + _b64(hashlib.pbkdf2_hmac("sha1", password.encode(), b"NaCl", 1000)),
        "keycloak_sha1_512_bits": keycloak_pbkdf2(
            "pbkdf2", 1000, _b64(salt), _b64(hashlib.pbkdf2_hmac("sha1", password.encode(), salt, 1000, dklen=64))),
        "keycloak_sha256_256_bits": keycloak_pbkdf2(
            "pbkdf2-sha256", 1000, _b64(salt), _b64(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000))),
        "keycloak_sha256_512_bits": keycloak_pbkdf2(  # (Keycloak before 24 derived 512 bits for every provider)
            "pbkdf2-sha256", 1000, _b64(salt),
            _b64(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000, dklen=64))),
        "keycloak_sha512": keycloak_pbkdf2(
            "pbkdf2-sha512", 1000, _b64(salt), _b64(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 1000))),
    }
    for name, stored in made.items():
        assert importable(stored) == stored, name
        assert verify(stored, password), name
        assert not verify(stored, password + "x"), name
        assert not verify(stored, ""), name
        assert foreign_hashes.describe(stored)["type"] in {"bcrypt", "pbkdf2_sha1", "pbkdf2_sha256", "pbkdf2_sha512"}


def test_bcrypt_reads_72_bytes_as_it_always_did():
    long = "x" * 80
    stored = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()
    assert verify(stored, long) and verify(stored, "x" * 72 + "something else")


def test_a_keycloak_argon2_credential_becomes_a_phc_string_argon2_reads():
    from argon2 import PasswordHasher

    salt, value = b"keycloak-salt-16", low_level.hash_secret_raw(b"pw", b"keycloak-salt-16", time_cost=3,
                                                                  memory_cost=1024, parallelism=1, hash_len=32,
                                                                  type=low_level.Type.ID)
    stored = keycloak_argon2("id", "1.3", 1024, 3, 1, _b64(salt), _b64(value))
    assert importable(stored) == stored and PasswordHasher().verify(stored, "pw")
    with pytest.raises(HashRefused):
        keycloak_argon2("d", "1.3", 1024, 3, 1, _b64(salt), _b64(value))


def test_a_django_argon2_hash_without_a_version_is_accepted_as_django_accepts_it():
    """Django 1.10 wrote argon2 hashes without `v=` (`argon2$argon2i$m=512,t=2,p=2$...`), and Django
    verifies them still (argon2-cffi reads a missing version as argon2's first, 0x10): a user who
    has not signed in since is imported, and signs in here."""
    from idp.security.passwords import Passwords

    made = low_level.hash_secret(b"secret", b"somesaltsalt", time_cost=2, memory_cost=512, parallelism=2,
                                 hash_len=16, type=low_level.Type.I, version=16).decode()
    django = "argon2" + made.replace("$v=16$", "$")
    assert "$v=" not in django
    stored = importable(django)
    assert stored == django.removeprefix("argon2")
    passwords = Passwords(time_cost=1, memory_cost=1024)
    assert passwords.verify(stored, "secret") and not passwords.verify(stored, "secreT")
    assert passwords.needs_rehash(stored)
    with pytest.raises(HashRefused, match="unknown argon2 version"):  # a version written, and not 16 or 19
        importable(made.replace("$v=16$", "$v=18$"))


def test_django_bcrypt_sha256_is_accepted_and_verified_as_django_does():
    """Django's BCryptSHA256PasswordHasher (`bcrypt_sha256$$2b$12$...`, in its default
    PASSWORD_HASHERS): bcrypt of the hex SHA-256 of the password, so that all of a long password
    counts. Kept as Django stores it, verified as Django verifies it."""
    import binascii

    password = "x" * 80 + " pässwörd"
    made = bcrypt.hashpw(binascii.hexlify(hashlib.sha256(password.encode()).digest()), bcrypt.gensalt(4)).decode()
    stored = "bcrypt_sha256$" + made
    assert importable(stored) == stored
    assert verify(stored, password)
    assert not verify(stored, "x" * 80) and not verify(stored, password[:72])
    assert foreign_hashes.describe(stored) == {"type": "bcrypt_sha256", "cost": 4}
    with pytest.raises(HashRefused, match="bcrypt cost 31 out of range"):
        importable("bcrypt_sha256$$2b$31$" + "a" * 53)
