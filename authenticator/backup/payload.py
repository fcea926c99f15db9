"""What a backup holds: the accounts' names and secrets, nothing else.

TOTP accounts carry their secret and parameters, so they work at once after a
restore. Push accounts carry only what a new device needs to ask the server
for a credential of its own (server URL, user identifier, server-side account
id, work/personal). The device private key and any other push state stay on
the device: a restored push account comes back as ``needs_verification``.
"""

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Optional

from authenticator.accounts import (
    ALGORITHMS,
    DIGITS,
    NEEDS_VERIFICATION,
    PUSH,
    TOTP,
    Account,
    PushData,
    TotpParams,
    is_text_field,
)
from authenticator.errors import BackupTampered
from authenticator.otpauth import MAX_PERIOD
from authenticator.totp import secret_bytes

PUSH_FIELDS_BACKED_UP = ("issuer_url", "username", "account_id", "kind")
PUSH_KINDS = ("work", "personal")
CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class BackupContents:
    """What a payload holds: the accounts, and when it was written (None: the backup does not say, or
    not in the documented form; docs/backup-format.md does not require it, so such a backup still
    restores). The time is what lets a user notice an older backup put back in the folder."""

    accounts: list[Account]
    created_at: Optional[str]


def encode_payload(accounts: list[Account], created_at: str) -> bytes:
    return json.dumps(
        {"created_at": created_at, "accounts": [_account_entry(a) for a in accounts]},
        sort_keys=True,
    ).encode("utf-8")


def decode_payload(raw: bytes) -> BackupContents:
    """Accounts without ids (the store assigns them; push ones need verification), and ``created_at``.

    Anything but the documented JSON is reported as tampered: also JSON nested deeper than the
    parser recurses (RecursionError), and the same account twice (this app never writes that, and
    the store holds each account once: restoring it would fail half-way)."""
    try:
        document = json.loads(raw.decode("utf-8"))
        accounts = [_account_from_entry(entry) for entry in document["accounts"]]
        created_at = _created_at(document.get("created_at"))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise BackupTampered("the backup's contents are not valid (authenticated, but unreadable)") from None
    seen = set()
    for account in accounts:
        identity = (account.issuer, account.name, account.type)  # what Vault.add holds once
        if identity in seen:
            raise BackupTampered(f"the backup's contents are not valid (authenticated, but it holds "
                                 f"{account.type} account {account.label} twice)")
        seen.add(identity)
    return BackupContents(accounts, created_at)


def _created_at(value) -> Optional[str]:
    """``value`` when it is a time in the documented form, else None."""
    try:
        datetime.strptime(value, CREATED_AT_FORMAT)
    except (TypeError, ValueError):
        return None
    return value


def _account_entry(account: Account) -> dict:
    entry = {"type": account.type, "issuer": account.issuer, "name": account.name}
    if account.type == TOTP:
        t = account.totp
        entry["totp"] = {"secret": t.secret, "algorithm": t.algorithm, "digits": t.digits, "period": t.period}
    elif account.type == PUSH:
        entry["push"] = {name: getattr(account.push, name) for name in PUSH_FIELDS_BACKED_UP}
    return entry


def _account_from_entry(entry: dict) -> Account:
    issuer, name = _text(entry["issuer"]), _text(entry["name"])
    if entry["type"] == TOTP:
        t = entry["totp"]
        params = TotpParams(secret=_text(t["secret"]), algorithm=t["algorithm"], digits=t["digits"], period=t["period"])
        # What an otpauth URI may carry (authenticator.otpauth), and nothing else: a backup that
        # restores must give codes, never a traceback at the first `code`.
        if not params.secret or not secret_bytes(params.secret) or params.algorithm not in ALGORITHMS:
            raise ValueError("bad TOTP parameters")
        if not (_whole(params.digits) and params.digits in DIGITS):
            raise ValueError("bad TOTP digits")
        if not (_whole(params.period) and 1 <= params.period <= MAX_PERIOD):
            raise ValueError("bad TOTP period")
        return Account(id="", type=TOTP, issuer=issuer, name=name, totp=params)
    if entry["type"] == PUSH:
        p = entry["push"]
        if p["kind"] not in PUSH_KINDS:
            raise ValueError("bad push kind")
        push = PushData(
            issuer_url=_text(p["issuer_url"]), username=_text(p["username"]), kind=p["kind"],
            account_id=p.get("account_id"), status=NEEDS_VERIFICATION,
        )
        return Account(id="", type=PUSH, issuer=issuer, name=name, push=push)
    raise ValueError(f"unknown account type {entry['type']!r}")


def _whole(value) -> bool:
    """An int, not a float such as 6.0 (equal to 6) nor a bool."""
    return type(value) is int


def _text(value) -> str:
    if not is_text_field(value):
        raise TypeError("expected a string")
    return value


assert set(PUSH_FIELDS_BACKED_UP) <= {f.name for f in fields(PushData)}
assert "device_private_key" not in PUSH_FIELDS_BACKED_UP
