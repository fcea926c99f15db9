"""A software WebAuthn authenticator for tests: ES256, attestation "none", a settable sign count."""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import bytes_to_base64url, encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


class SoftAuthenticator:
    def __init__(self, rp_id: str, origin: str, *, sign_count: int = 0, user_verified: bool = True,
                 backed_up: bool = False) -> None:
        self.rp_id, self.origin = rp_id, origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.sign_count = sign_count
        self.user_verified = user_verified
        self.backed_up = backed_up

    @property
    def id(self) -> str:
        return bytes_to_base64url(self.credential_id)

    def _flags(self, extra: int = 0) -> int:
        flags = UP | extra
        if self.user_verified:
            flags |= UV
        if self.backed_up:
            flags |= BE | BS
        return flags

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, challenge: str, origin: str | None = None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict, *, origin: str | None = None) -> dict:
        """Answer `navigator.credentials.create` with these (JSON) creation options."""
        assert options["rp"]["id"] == self.rp_id
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([self._flags(AT)])
                     + struct.pack(">I", self.sign_count) + b"\0" * 16
                     + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_key())
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": bytes_to_base64url(client_data),
                             "attestationObject": bytes_to_base64url(attestation), "transports": ["usb"]}}

    def get(self, options: dict, *, origin: str | None = None, sign_count: int | None = None) -> dict:
        """Answer `navigator.credentials.get`; the sign count goes up by one unless given."""
        if sign_count is None:
            self.sign_count = self.sign_count + 1 if self.sign_count else 0
        else:
            self.sign_count = sign_count
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([self._flags()])
                     + struct.pack(">I", self.sign_count))
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": bytes_to_base64url(client_data),
                             "authenticatorData": bytes_to_base64url(auth_data),
                             "signature": bytes_to_base64url(signature), "userHandle": None}}


# --- on a live server (tests/fixtures/oidc.py) ---------------------------------------------------


def enrolled_key(live_server, seeded, sign_count: int = 10) -> SoftAuthenticator:
    """A security key of the seeded user's, at sign count 10 (0: a passkey, whose count stays 0)."""
    from idp.db import db
    from idp.factors import Enrolled, directory

    key = SoftAuthenticator("localhost", live_server.url, sign_count=sign_count)
    registry = live_server.app.extensions["idp.factors"]
    webauthn = registry.get("webauthn")
    with live_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        ctx = registry.context(webauthn, transaction_id="enrol")
        step = webauthn.begin_enrolment(user, ctx)
        assert isinstance(webauthn.finish_enrolment(
            user, step.state, {"response": json.dumps(key.create(step.view["options"]))}, ctx), Enrolled)
        db.session.commit()
    return key


def options_of(page) -> dict:
    """The WebAuthn options a login or enrolment page hands its script."""
    return json.loads(html.unescape(re.search(
        r'<script type="application/json" id="webauthn-options"[^>]*>(.+?)</script>', page.text, re.S).group(1)))


def post_assertion(web, page, key, sign_count: int):
    options = options_of(page)
    return web.submit(page.form_with("response"), {"response": json.dumps(key.get(options, sign_count=sign_count))})
