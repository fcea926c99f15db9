"""The factor plugin contract, registry and credential store.

Plugins import from here only::

    from idp.factors import Factor, FactorKind, Step, Verified, Rejected, Enrolled, UserRef

`display_text` cleans a name a user or device chose (control characters out) before a plugin
stores or shows it; the credential store applies it to every label anyway. `storable` says whether
text from a request can reach the database at all (no NUL, no lone surrogate) before a plugin
uses it.
"""
from idp.factors.contract import LABEL_MAX, Factor, default_label, label_text, label_too_long
from idp.factors.errors import AccountDisabled, CredentialConflict, FactorError, FactorLoadError, FactorMisconfigured, FactorNotFound, SecretUnavailable
from idp.factors.types import (
    AttemptContext, CredentialInfo, Denied, Description, Enrolled, FactorKind, FactorUrls, Pending, Rejected,
    Step, UserRef, Verified,
)
from idp.security.text import display_text, storable

__all__ = [
    "Factor", "LABEL_MAX", "default_label", "label_text", "label_too_long", "display_text", "storable", "AccountDisabled", "CredentialConflict", "FactorError", "FactorLoadError", "FactorMisconfigured", "FactorNotFound", "SecretUnavailable",
    "AttemptContext", "CredentialInfo", "Denied", "Description", "Enrolled", "FactorKind", "FactorUrls",
    "Pending", "Rejected", "Step", "UserRef", "Verified",
]
