"""The key ring that seals secrets at rest: which keys seal, which open, and how it is written."""
from __future__ import annotations

import base64
import os

import pytest

from idp.security.secrets import KeyRing, SecretError


def key(name: str) -> str:
    return f"{name}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def test_the_first_key_seals_and_every_key_opens():
    k1, k2 = key("k1"), key("k2")
    old = KeyRing.from_settings([k1], "secret")
    key_id, blob = old.seal(b"seed", b"totp|1|1")
    new = KeyRing.from_settings([k2, k1], "secret")
    assert new.open(key_id, blob, b"totp|1|1") == b"seed"
    assert new.seal(b"x", b"a")[0] == "k2" and new.needs_reseal("k1")
    with pytest.raises(SecretError, match="no encryption key 'k1'"):
        KeyRing.from_settings([k2], "secret").open(key_id, blob, b"totp|1|1")


def test_rows_sealed_in_development_open_with_dev_after_a_real_key():
    """A database begun without encryption keys moves to real ones: "dev" names the key derived
    from the secret key, after the new one, until the rows are resealed."""
    key_id, blob = KeyRing.from_settings([], "secret").seal(b"seed", b"aad")
    assert key_id == "dev"
    ring = KeyRing.from_settings([key("k1"), "dev"], "secret")
    assert ring.current_id == "k1" and ring.open(key_id, blob, b"aad") == b"seed"
    with pytest.raises(SecretError):  # derived from another secret key: not the same key
        KeyRing.from_settings([key("k1"), "dev"], "another secret").open(key_id, blob, b"aad")


@pytest.mark.parametrize("entries, message", [
    (["dev"], "can only follow a real encryption key"),
    (["dev", key("k1")], "can only follow a real encryption key"),
    (["k1"], "KEY_ID:BASE64URL"),
    ([":abc"], "KEY_ID:BASE64URL"),
    ([key("dev")], "names the development key"),
    (["k1:AAAA"], "must be 32 bytes"),
    (["k1:a"], "is not base64url"),
    ([key("k1"), key("k1")], "must differ: k1 is given twice"),  # a new key under an old key's id
])
def test_badly_written_keys_are_refused(entries, message):
    with pytest.raises(ValueError, match=message):
        KeyRing.from_settings(entries, "secret")
