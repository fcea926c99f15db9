"""The accounts the app holds, and how a user names one on the command line.

An :class:`Account` is the same for both kinds (id, type, issuer, name); what
differs lives in ``totp`` (:class:`TotpParams`) or ``push`` (:class:`PushData`).
Accounts serialise to plain JSON dicts for the encrypted local store; the
backup has its own, narrower schema (``authenticator/backup/payload.py``).
"""

import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Optional

from authenticator.errors import AuthenticatorError
from authenticator.terminal import command_line

TOTP = "totp"
PUSH = "push"
ALGORITHMS = ("SHA1", "SHA256", "SHA512")
DIGITS = (6, 8)

ACTIVE = "active"
NEEDS_VERIFICATION = "needs_verification"


@dataclass(frozen=True)
class TotpParams:
    """RFC 6238 parameters. ``secret`` is base32 without padding, upper case."""

    secret: str
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30


@dataclass(frozen=True)
class PushData:
    """A device-bound push credential at one server (filled in by the push work).

    ``issuer_url``, ``username``, ``account_id`` and ``kind`` ("work" or
    "personal") are what a new device needs to ask the server for a fresh
    credential, so they are the only push fields a backup carries. ``kind`` is
    informational: activation URIs do not carry it (so it stays "work"), and
    ``recover`` offers both ways whatever it says (docs/backup-format.md).
    ``device_private_key`` (PEM) and anything in ``extra`` never leave the device.
    ``status`` is ``needs_verification`` after a restore: such an account holds
    no key and must not approve anything until ``recover`` gives it one.
    """

    issuer_url: str
    username: str
    kind: str = "work"
    account_id: Optional[str] = None
    device_id: Optional[str] = None
    device_private_key: Optional[str] = None
    status: str = ACTIVE
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Account:
    id: str
    type: str
    issuer: str
    name: str
    totp: Optional[TotpParams] = None
    push: Optional[PushData] = None

    @property
    def label(self) -> str:
        return f"{self.issuer}:{self.name}" if self.issuer else self.name

    @property
    def status(self) -> str:
        return self.push.status if self.push else ACTIVE

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Account":
        totp = TotpParams(**data["totp"]) if data.get("totp") else None
        push = PushData(**data["push"]) if data.get("push") else None
        return cls(
            id=data["id"], type=data["type"], issuer=data["issuer"], name=data["name"],
            totp=totp, push=push,
        )

    def with_id(self, account_id: str) -> "Account":
        return replace(self, id=account_id)


# The longest issuer or account name ``add`` takes (characters). A label is shown on every line of
# ``list`` and ``pending`` and carried in every backup: a QR code's 100,000-character label was
# stored, backed up and printed as it came. Real ones are e-mail addresses and service names.
MAX_LABEL_PART = 256


def check_label_part(value: str, what: str, error=AuthenticatorError) -> str:
    """``value`` (an issuer or an account name from outside), unless longer than MAX_LABEL_PART."""
    if len(value) > MAX_LABEL_PART:
        raise error(f"the {what} is longer than {MAX_LABEL_PART} characters ({len(value)})")
    return value


def is_text_field(value) -> bool:
    """What an account's text fields (issuer, name, a push account's username) must be: a ``str``.
    The backup reader (backup/payload.py) accepts nothing else, so an account holding anything
    else (a server's ``"user": 42``) would make every backup of the device unrestorable."""
    return isinstance(value, str)


def ensure_can_approve(account: Account) -> None:
    """Push answers must come from a device holding its own key; a restored account does not."""
    if account.type != PUSH:
        raise AuthenticatorError(f"{account.label} is not a push account")
    if account.status == NEEDS_VERIFICATION or not account.push.device_private_key:
        raise AuthenticatorError(
            f"{account.label} was restored from a backup and needs verification first: "
            f"run {command_line(f'recover {account.id}')}"
        )


def new_account_id(taken: Iterable[str]) -> str:
    """Short random ids: easy to type, unique within one device. A set is used as it is (a copy per
    call would make adding many accounts quadratic)."""
    if not isinstance(taken, (set, frozenset)):
        taken = set(taken)
    while True:
        candidate = secrets.token_hex(4)
        if candidate not in taken:
            return candidate


def find_account(accounts: list[Account], query: str) -> Account:
    """Resolve what the user typed: an id, then "issuer:name", then a unique name."""
    for account in accounts:
        if account.id == query:
            return account
    for key in (lambda a: a.label, lambda a: a.name):
        matches = [a for a in accounts if key(a) == query]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(a.id for a in matches)
            raise AuthenticatorError(f"{query!r} matches several accounts ({ids}); use the id")
    raise AuthenticatorError(f"no account matches {query!r}")
