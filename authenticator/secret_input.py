"""Where the local passphrase and the recovery secret come from.

In order: a file named on the command line (what a command names explicitly
wins over what the environment happens to hold), an environment variable, then
an interactive prompt (asked twice when the secret is being created, so a typo
does not lock the user out). Scripts and tests use the first two
(see the ``idp-authenticator`` section of CONTRACT.md); without a terminal on
stdin nobody can answer a prompt, so the command fails at once, naming both.
"""

import getpass
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from authenticator.errors import AuthenticatorError
from authenticator.terminal import is_terminal, is_text

PASSPHRASE_ENV = "IDP_AUTHENTICATOR_PASSPHRASE"
RECOVERY_SECRET_ENV = "IDP_AUTHENTICATOR_RECOVERY_SECRET"
MAX_SECRET_FILE = 64 * 1024  # characters; a secret is one line, far shorter
# A new passphrase's least length (NIST SP 800-63B's floor for a secret a person chooses): the
# store is a file an attacker may copy and guess at offline, at scrypt's pace. Stores made before
# the rule still open. (The recovery secret has its own, longer rule: backup.service.)
MIN_NEW_PASSPHRASE = 8


@dataclass
class SecretSource:
    """One secret for one command run: asked at most once, then remembered in memory."""

    what: str  # "passphrase" or "recovery secret", used in prompts and errors
    env_var: str
    file_option: str  # the command-line option naming a file that holds it
    file: Optional[str] = None
    min_new_length: int = 0  # checked only when the secret is being created
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
        if not is_text(secret):  # bytes that are not UTF-8 (from the environment): no key derives from them
            raise AuthenticatorError(f"the {self.what} is not UTF-8 text")
        if creating and len(secret) < self.min_new_length:
            raise AuthenticatorError(f"a new {self.what} must be at least {self.min_new_length} characters "
                                     f"(several words are best)")
        return secret

    def _read_file(self) -> str:
        try:
            with open(self.file, encoding="utf-8") as handle:
                text = handle.read(MAX_SECRET_FILE + 1)  # bounded, for a file such as /dev/zero
        except OSError as exc:
            raise AuthenticatorError(f"cannot read {self.what} file {self.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise AuthenticatorError(f"the {self.what} file {self.file} is not UTF-8 text") from None
        if len(text) > MAX_SECRET_FILE:
            raise AuthenticatorError(f"the {self.what} file {self.file} is too long for a {self.what}")
        return text.rstrip("\r\n")

    def _ask(self, creating: bool) -> str:
        # getpass would fall back to reading stdin with a warning and a prompt nobody sees:
        # several lines where a script expects one, and a secret echoed if one is piped.
        if not is_terminal(sys.stdin):
            raise self._not_given("stdin is not a terminal, so it cannot be asked for")
        try:
            if not creating:
                return getpass.getpass(f"{self.what.capitalize()}: ")
            first = getpass.getpass(f"New {self.what}: ")
            if first != getpass.getpass(f"Repeat the new {self.what}: "):
                raise AuthenticatorError(f"the two {self.what}s differ")
            return first
        except (EOFError, KeyboardInterrupt):
            raise self._not_given("none was typed") from None
        except UnicodeDecodeError:
            raise AuthenticatorError(f"the {self.what} typed is not UTF-8 text") from None

    def _not_given(self, why: str) -> AuthenticatorError:
        return AuthenticatorError(
            f"no {self.what} given: set {self.env_var} or use {self.file_option} FILE ({why})"
        )


def passphrase_source(file: Optional[str]) -> SecretSource:
    return SecretSource("passphrase", PASSPHRASE_ENV, "--passphrase-file", file, min_new_length=MIN_NEW_PASSPHRASE)


def recovery_secret_source(file: Optional[str]) -> SecretSource:
    return SecretSource("recovery secret", RECOVERY_SECRET_ENV, "--recovery-secret-file", file)
