"""The OpenID Connect extension of the code grant: ID token keys, claims and nonce replay checks."""
from __future__ import annotations

import time

from authlib.oidc.core import grants as oidc_grants
from flask import current_app, g

from idp.db import db
from idp.oidc import claims, keys
from idp.oidc.grants import NONCE_USED


class OpenIDCode(oidc_grants.OpenIDCode):
    def exists_nonce(self, nonce, request):
        """A nonce already bound to one of this client's codes is a replay.

        Checked here when /authorize validates the request. When the login ends and the request
        is validated again to issue its code (`login_outcome` set), the code's INSERT checks it
        in the same statement (AuthorizationCodeGrant.save_authorization_code)."""
        if getattr(request, "login_outcome", None) is not None:
            return False
        found = db.read_first(NONCE_USED, {"client_id": request.payload.client_id, "nonce": nonce})
        return found is not None

    def get_client_algorithm(self, client):
        return client.id_token_signed_response_alg or current_app.extensions["idp.settings"].get(
            "tokens.default_id_token_alg", "ES256")

    # Authlib asks for the header (the kid) and, after the claims, for the key, in two calls:
    # each reading keys.snapshot() would risk a reload in between, at the very moment a rotation
    # takes effect, and a token naming one key but signed by the other. The header's call takes
    # both from one snapshot, and the key's call uses that pair (kept for this request only).
    def get_encode_header(self, client):
        alg = self.get_client_algorithm(client)
        kid, key = keys.signing_key(alg)
        g.idp_id_token_key = (alg, key)
        return {"alg": alg, "kid": kid, "typ": "JWT"}

    def resolve_client_private_key(self, client):
        alg = self.get_client_algorithm(client)
        chosen = g.pop("idp_id_token_key", None)
        return chosen[1] if chosen is not None and chosen[0] == alg else keys.signing_key(alg)[1]

    def get_client_claims(self, client):
        settings = current_app.extensions["idp.settings"]
        now = int(time.time())
        return {"iss": settings.issuer, "aud": [client.get_client_id()], "iat": now,
                "exp": now + int(settings.get("tokens.id_token_ttl", 3600))}

    def get_authorization_code_claims(self, authorization_code):
        extra = super().get_authorization_code_claims(authorization_code)
        # amr and acr always, requested or not (CONTRACT.md rule 8).
        extra["amr"] = authorization_code.get_amr()
        extra["acr"] = authorization_code.get_acr()
        if authorization_code.row.session_id:
            extra["sid"] = authorization_code.row.session_id
        return extra

    def generate_user_info(self, user, scope):
        return claims.generate_user_info(user, scope)
