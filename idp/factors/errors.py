"""Errors for operator problems. User mistakes are `Rejected` outcomes, never exceptions."""


class FactorError(Exception):
    """Base class: something an operator must fix (configuration, packaging, data)."""


class FactorLoadError(FactorError):
    """A plugin's entry point cannot be imported or does not declare the contract correctly."""


class FactorNotFound(FactorError, LookupError):
    """No factor of that name is installed (or it is disabled)."""


class FactorMisconfigured(FactorError):
    """A factor's settings are unusable (e.g. an unknown TOTP algorithm, an empty RP id)."""


class SecretUnavailable(FactorError):
    """A stored secret cannot be opened: its key left the key ring or the row was tampered with."""


class AccountDisabled(FactorError):
    """The account was disabled: it gains no credential (e.g. a device registered by a recovery
    whose checks passed a moment before the account was disabled)."""


class CredentialConflict(FactorError):
    """A credential with this `(factor, lookup_key)` already exists (e.g. a security key registered twice).

    Plugins usually turn it into `Rejected("already_registered")`."""
