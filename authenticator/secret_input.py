"""Where the local passphrase and the recovery secret come from.

In order: a file named on the command line (what a command names explicitly
wins over what the environment happens to hold), an environment variable, then
an interactive prompt (asked twice when the secret is being created, so a typo
does not lock the user out). Scripts and tests use the first two
(see the ``idp-authenticator`` section of CONTRACT.md).
"""

import getpass
import os
from dataclasses import dataclass, field
from typing import Optional

from authenticator.errors import AuthenticatorError

PASSPHRASE_ENV = "IDP_AUTHENTICATOR_PASSPHRASE"
RECOVERY_SECRET_ENV = "IDP_AUTHENTICATOR_RECOVERY_SECRET"


@dataclass
class SecretSource:
    """One secret for one command run: asked at most once, then remembered in memory."""

    what: str  # "passphrase" or "recovery secret", used in prompts and errors
    env_var: str
    file: Optional[str] = None
    _value: Optional[str] = field(default=None, repr=False)

    def get(self, creating: bool = False) -> str:
        if self._value is None:
            self._value = self._obtain(creating)
        return self._value

    def _obtain(self, creating: bool) -> str:
        secret = self._read_file() if self.file else os.environ.get(self.env_var)
        if secret is None:
            secret = self._ask(creating)
        if not secret:
            raise AuthenticatorError(f"the {self.what} must not be empty")
        return secret

    def _read_file(self) -> str:
        try:
            with open(self.file, encoding="utf-8") as handle:
                return handle.read().rstrip("\r\n")
        except OSError as exc:
            raise AuthenticatorError(f"cannot read {self.what} file {self.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise AuthenticatorError(f"the {self.what} file {self.file} is not UTF-8 text") from None

    def _ask(self, creating: bool) -> str:
        try:
            if not creating:
                return getpass.getpass(f"{self.what.capitalize()}: ")
            first = getpass.getpass(f"New {self.what}: ")
            if first != getpass.getpass(f"Repeat the new {self.what}: "):
                raise AuthenticatorError(f"the two {self.what}s differ")
            return first
        except (EOFError, KeyboardInterrupt):
            raise AuthenticatorError(
                f"no {self.what} given (set {self.env_var} or use the file option)"
            ) from None


def passphrase_source(file: Optional[str]) -> SecretSource:
    return SecretSource("passphrase", PASSPHRASE_ENV, file)


def recovery_secret_source(file: Optional[str]) -> SecretSource:
    return SecretSource("recovery secret", RECOVERY_SECRET_ENV, file)
