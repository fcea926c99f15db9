"""The discovery document, built once per app and served pre-serialized.

Every feature listed here works (tests check each): keep it that way when editing.
"""
from __future__ import annotations

import json

from idp.config import Settings
from idp.policy.decide import ACR_MFA, ACR_PWD
from idp.oidc.adapters import AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from idp.oidc.client_assertion import SIGNING_ALGS as ASSERTION_ALGS
from idp.oidc.device_flow import GRANT_TYPE as DEVICE_CODE_GRANT
from idp.oidc.dpop import ALGS as DPOP_ALGS
from idp.oidc import response_mode, urls
from idp.oidc.keys import SUPPORTED_ALGS


def build(settings: Settings) -> str:
    issuer = settings.issuer
    document = {
        "issuer": issuer,
        **{name: urls.at(issuer, name) for name in urls.PATHS},
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": list(response_mode.MODES),  # idp.oidc.response_mode
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", DEVICE_CODE_GRANT],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
                             "name", "locale", "email", "email_verified", "org"],
        "acr_values_supported": [ACR_PWD, ACR_MFA],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["en", "fr"],
        "claims_parameter_supported": False,
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(ASSERTION_ALGS),
        # False: no request is fetched from a client's URL. A pushed request's request_uri works.
        "request_uri_parameter_supported": False,
        # (pushed_authorization_request_endpoint, above: RFC 9126, idp.oidc.pushed_requests)
        "require_pushed_authorization_requests": False,
        "frontchannel_logout_supported": True,  # OIDC Front-Channel Logout 1.0 (idp.oidc.frontchannel)
        "frontchannel_logout_session_supported": True,  # iss and sid always sent
        "backchannel_logout_supported": True,  # OIDC Back-Channel Logout 1.0 (idp.oidc.backchannel)
        "backchannel_logout_session_supported": True,
        "authorization_response_iss_parameter_supported": True,
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),  # RFC 9449 (idp.oidc.dpop)
    }
    return json.dumps(document, separators=(",", ":"))
