"""An enrolment page's view, sealed while it waits in the database.

`begin_enrolment` returns what the page shows: for TOTP the new seed in clear, its QR code
and the otpauth URI; for push an activation URI. The login transaction (or the security
page's pending enrolment) keeps it until the user finishes, and an abandoned one stays until
maintenance deletes it, so it is encrypted like the secrets themselves (AES-GCM under the
configured key ring), bound by its associated data to the row that holds it.
"""
from __future__ import annotations

from flask import current_app

from idp.security.secrets import SecretError


def seal_view(view: dict, aad: bytes) -> str:
    return current_app.extensions["idp.keyring"].seal_json(view, aad)


def open_view(token, aad: bytes) -> dict | None:
    """The view `seal_view` sealed, or None when it does not open (its key was taken out of the
    ring during the ten minutes an enrolment lives): the caller forgets that enrolment and begins
    another, rather than render a page from an empty view (a template needs its fields)."""
    try:
        return current_app.extensions["idp.keyring"].open_json(token, aad)
    except SecretError:
        return None
