"""The `acr` values this provider issues and understands, and the `amr` rule.

`amr` lists RFC 8176 method values: `pwd` for the password, each second factor's own
values (`otp`, `hwk`, `swk`, `user` ...), and `mfa` once two distinct methods were used.
`acr` says whether the login was multi-factor.
"""
from __future__ import annotations

ACR_PASSWORD = "urn:idp:acr:pwd"
ACR_MFA = "urn:idp:acr:mfa"

# acr_values that a client may send to ask for a multi-factor login.
MFA_ACR_VALUES = frozenset({
    ACR_MFA,
    "mfa",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor-physical",
})

ACR_VALUES_SUPPORTED = (ACR_PASSWORD, ACR_MFA)


def acr_for(amr: list[str] | tuple[str, ...]) -> str:
    return ACR_MFA if "mfa" in amr else ACR_PASSWORD


def requests_mfa(acr_values: str | None) -> bool:
    return any(value in MFA_ACR_VALUES for value in (acr_values or "").split())
