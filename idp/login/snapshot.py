"""The validated authorization request, stored with the transaction and rebuilt to finish it.

Only the protocol parameters are kept (never cookies or headers); the pipeline hands
the rebuilt request back to Authlib, which validates it again before issuing a code.
"""
from __future__ import annotations

from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

# Parameters of an authorization request that the pipeline keeps.
KEPT = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
        "code_challenge_method", "prompt", "max_age", "acr_values", "login_hint", "ui_locales", "response_mode",
        "dpop_jkt")


class SnapshotRequest(OAuth2Request):
    def __init__(self, issuer: str, params: dict) -> None:
        super().__init__("GET", f"{issuer}/authorize?{urlencode(params)}")
        self.payload = BasicOAuth2Payload(params)
        self._params = params

    @property
    def args(self):
        return self._params

    @property
    def form(self):
        return {}


def capture(args) -> dict:
    """Single-valued copies of the kept parameters (idp.oidc.parameters refused repeated ones
    before this). An empty value is left out: RFC 6749 3.1 treats it as not sent."""
    return {key: args[key] for key in KEPT if args.get(key)}


def rebuild(issuer: str, params: dict) -> SnapshotRequest:
    return SnapshotRequest(issuer, dict(params))
