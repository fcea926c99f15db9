"""Secrets at rest: AES-256-GCM under a key ring, with associated data binding each ciphertext to its row.

`seal(plaintext, aad)` encrypts with the current (first) key and returns
`(key_id, nonce || ciphertext)`; `open(key_id, blob, aad)` decrypts with whichever
key sealed it. The associated data (e.g. `b"totp|42|7"`) makes a ciphertext copied
into another row fail to decrypt. `idp keys rotate-secrets` re-seals old rows.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretError(Exception):
    """A ciphertext cannot be opened (unknown key, wrong row, tampering)."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# What an operator moving a development database to production must know
# (README, "Rolling in a new encryption key"): said wherever rows sealed with "dev" fail to open.
DEV_KEY_HINT = ("the development key \"dev\" is derived from server.secret_key, and this is not the secret key "
                "that sealed them: reseal them once under that one (IDP_ENV=development IDP_SECRET_KEY=OLD "
                "idp keys rotate-secrets, with the new key first in the ring), then change the secret key")


class KeyRing:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("the key ring needs at least one key")
        if any(len(key) != 32 for _key_id, key in keys):
            raise ValueError("every encryption key must be 32 bytes")
        seen = [key_id for key_id, _key in keys]
        repeated = sorted({key_id for key_id in seen if seen.count(key_id) > 1})
        if repeated:
            # One id for two keys: only one of them could ever open what it names (a new key
            # given an old key's id would leave the old rows unopenable once the old one goes).
            raise ValueError(f"encryption key ids must differ: {', '.join(repeated)!s} is given twice")
        self.current_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def from_settings(cls, encoded: list[str] | tuple[str, ...], secret_key: str) -> "KeyRing":
        """Parse "KEY_ID:BASE64URL" entries; with none, derive a development key from the secret key.

        A bare "dev" entry after a real key stands for that development key, so that a database
        begun without encryption keys can move to real ones: ["k1:...", "dev"] seals with k1 and
        still opens the old rows until `idp keys rotate-secrets` has resealed them. It never
        comes first: the development key opens old rows, it never seals new ones.
        """
        development = ("dev", hashlib.sha256(b"idp-dev-encryption|" + secret_key.encode()).digest())
        if not encoded:
            return cls([development])
        keys = []
        for position, entry in enumerate(encoded):
            if entry == "dev":
                if position == 0:
                    raise ValueError("the development key \"dev\" can only follow a real encryption key")
                keys.append(development)
                continue
            key_id, sep, material = entry.partition(":")
            if not sep or not key_id:
                raise ValueError("encryption keys are written KEY_ID:BASE64URL (or \"dev\" after one)")
            if key_id == "dev":
                raise ValueError("the key id \"dev\" names the development key: choose another")
            # Errors name the entry by its position, never by its text: an entry written the
            # wrong way round would put the key material in a log.
            try:
                key = _b64decode(material)
            except ValueError:  # binascii.Error included
                raise ValueError(f"encryption key number {position + 1} is not base64url") from None
            if len(key) != 32:
                raise ValueError(f"encryption key number {position + 1} must be 32 bytes (43 base64url characters)")
            keys.append((key_id, key))
        return cls(keys)

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self.current_id, nonce + self._ciphers[self.current_id].encrypt(nonce, plaintext, aad)

    def open(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SecretError(f"no encryption key {key_id!r} in the key ring")
        try:
            return cipher.decrypt(blob[:12], blob[12:], aad)
        except InvalidTag as exc:
            if key_id == "dev":
                # The likeliest cause by far: the database moved from development to production,
                # and production refuses the development secret key the "dev" key came from.
                raise SecretError(f"a row sealed with \"dev\" does not open: {DEV_KEY_HINT}") from exc
            raise SecretError("ciphertext does not open with its key and associated data") from exc

    def seal_token(self, plaintext: bytes, aad: bytes) -> str:
        """`plaintext` sealed as one string, "KEY_ID:BASE64URL", to keep in a JSON column or field."""
        key_id, blob = self.seal(plaintext, aad)
        return f"{key_id}:{base64.urlsafe_b64encode(blob).decode()}"

    def open_token(self, token: str, aad: bytes) -> bytes:
        """What `seal_token` sealed with the same associated data; SecretError if it does not open."""
        key_id, sep, encoded = token.partition(":") if isinstance(token, str) else ("", "", "")
        if not sep:
            raise SecretError("not a sealed value")
        try:
            blob = _b64decode(encoded)
        except ValueError as exc:  # binascii.Error included
            raise SecretError("not a sealed value") from exc
        return self.open(key_id, blob, aad)

    def seal_json(self, value, aad: bytes) -> str:
        """`value` as JSON, sealed with `seal_token`."""
        return self.seal_token(json.dumps(value, separators=(",", ":")).encode(), aad)

    def open_json(self, token: str, aad: bytes):
        """What `seal_json` sealed; SecretError if it does not open."""
        return json.loads(self.open_token(token, aad))

    def needs_reseal(self, key_id: str) -> bool:
        return key_id != self.current_id
