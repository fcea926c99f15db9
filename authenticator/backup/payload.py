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
    check_label_part,
    is_text_field,
)
from authenticator.errors import BackupTampered
from authenticator.otpauth import MAX_PERIOD, InvalidOtpauthUri, normalised_secret
from authenticator.totp import secret_bytes
from authenticator.uris import server_url

PUSH_FIELDS_BACKED_UP = ("issuer_url", "username", "account_id", "kind")
PUSH_KINDS = ("work", "personal")
CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The most accounts a backup may hold. Far more than a person keeps, and small enough that a restore
# (under the store's lock) and every later command that reads the store stay quick: the 16 MiB file
# bound alone let through 60,000 accounts.
MAX_ACCOUNTS = 10_000
# A server-side account id: an opaque short string (a server's UUID or number); bounded like a label.
MAX_ACCOUNT_ID = 256


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
        if len(document["accounts"]) > MAX_ACCOUNTS:
            raise BackupTampered(f"the backup's contents are not valid (authenticated, but it holds "
                                 f"{len(document['accounts'])} accounts, more than {MAX_ACCOUNTS})")
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
    """One account, held to the limits ``add`` applies to what it is given (labels, the secret's
    length, a server URL a password may be sent to): a backup is only as trustworthy as whoever
    else knows its recovery secret, and it must not bring in what ``add`` would have refused."""
    issuer, name = _label(entry["issuer"], "issuer"), _label(entry["name"], "account name")
    if entry["type"] == TOTP:
        t = entry["totp"]
        try:  # the secret as `add` takes it from an otpauth URI: normalised, at least 80 bits, at most its length
            secret = normalised_secret(_text(t["secret"]))
        except InvalidOtpauthUri as refused:
            raise ValueError(f"bad TOTP secret: {refused}") from None
        params = TotpParams(secret=secret, algorithm=t["algorithm"], digits=t["digits"], period=t["period"])
        # What an otpauth URI may carry (authenticator.otpauth), and nothing else: a backup that
        # restores must give codes, never a traceback at the first `code`.
        if not secret_bytes(params.secret) or params.algorithm not in ALGORITHMS:
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
        account_id = p.get("account_id")
        if account_id is not None and len(_text(account_id)) > MAX_ACCOUNT_ID:
            raise ValueError("bad push account id")
        # `recover --password` sends the account's password to this URL: the rule registration
        # applies to a server a secret goes to (https, or plain http to this machine only).
        issuer_url = _text(p["issuer_url"])
        server_url(issuer_url, ValueError, "push issuer URL")
        push = PushData(
            issuer_url=issuer_url, username=_label(p["username"], "push user name"), kind=p["kind"],
            account_id=account_id, status=NEEDS_VERIFICATION,
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


def _label(value, what: str) -> str:
    """A text field shown on every line of ``list`` (issuer, name, user): capped as ``add`` caps it."""
    return check_label_part(_text(value), what, ValueError)


assert set(PUSH_FIELDS_BACKED_UP) <= {f.name for f in fields(PushData)}
assert "device_private_key" not in PUSH_FIELDS_BACKED_UP
