"""The backup container and payload, called directly: layout, each failure, what is left out."""

import json
import struct

import pytest

from authenticator.accounts import NEEDS_VERIFICATION, PUSH, TOTP, Account, PushData, TotpParams
from authenticator.backup.format import HEADER_SIZE, MAGIC, new_backup_key, open_backup, seal_backup
from authenticator.backup.payload import decode_payload, encode_payload
from authenticator.backup.storage import BACKUP_FILE, DirectoryStorage
from authenticator.errors import (
    AuthenticatorError,
    BackupTampered,
    BackupTruncated,
    NoBackupFound,
    StorageUnreachable,
    UnsupportedBackupVersion,
    WrongRecoverySecret,
)
from authenticator_testkit import RECOVERY_SECRET

PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nDEVICE-ONLY\n-----END PRIVATE KEY-----"
ACCOUNTS = [
    Account(id="t1", type=TOTP, issuer="ACME", name="alice",
            totp=TotpParams(secret="JBSWY3DPEHPK3PXP", algorithm="SHA256", digits=8, period=60)),
    Account(id="p1", type=PUSH, issuer="Work", name="alice@work.example",
            push=PushData(issuer_url="https://idp.work.example", username="alice@work.example", kind="work",
                          account_id="u-42", device_id="dev-7", device_private_key=PRIVATE_KEY,
                          extra={"last_nonce": "n"})),
]


@pytest.fixture
def blob():
    return seal_backup(new_backup_key(RECOVERY_SECRET), encode_payload(ACCOUNTS, "2023-11-14T22:13:20Z"))


def test_header_layout_matches_the_document(blob):
    magic, version, kdf_id, log2_n, r, p = struct.unpack_from(">8sHBBHH", blob)
    assert (magic, version, kdf_id, log2_n, r, p) == (MAGIC, 1, 1, 4, 8, 1)
    (length,) = struct.unpack_from(">I", blob, 76)
    assert HEADER_SIZE == 80 and len(blob) == HEADER_SIZE + length


def test_round_trip_keeps_totp_and_only_the_push_recovery_facts(blob):
    payload = open_backup(blob, RECOVERY_SECRET)
    assert b"DEVICE-ONLY" not in payload and b"dev-7" not in payload and b"last_nonce" not in payload
    totp, push = decode_payload(payload).accounts
    assert totp.totp == ACCOUNTS[0].totp and (totp.issuer, totp.name) == ("ACME", "alice")
    assert push.push.issuer_url == "https://idp.work.example"
    assert (push.push.username, push.push.account_id, push.push.kind) == ("alice@work.example", "u-42", "work")
    assert push.push.device_private_key is None and push.status == NEEDS_VERIFICATION


def test_payload_schema(blob):
    document = json.loads(open_backup(blob, RECOVERY_SECRET))
    assert set(document) == {"created_at", "accounts"}
    assert document["accounts"][1]["push"] == {
        "issuer_url": "https://idp.work.example", "username": "alice@work.example",
        "account_id": "u-42", "kind": "work",
    }


def test_wrong_secret(blob):
    with pytest.raises(WrongRecoverySecret):
        open_backup(blob, "not the secret")


@pytest.mark.parametrize("offset", [HEADER_SIZE + 3, -1, 20, 66])
def test_tampering_anywhere_after_the_version_is_caught(blob, offset):
    altered = bytearray(blob)
    altered[offset] ^= 0x01
    # Salt (16..31) and key check (32..63) alterations read as a wrong secret, which is
    # all a reader can tell; everything else authenticated fails as tampering.
    expected = WrongRecoverySecret if 16 <= offset % len(blob) < 64 else BackupTampered
    with pytest.raises(expected):
        open_backup(bytes(altered), RECOVERY_SECRET)


@pytest.mark.parametrize("keep", [0, 5, 9, 40, HEADER_SIZE, HEADER_SIZE + 10])
def test_truncation(blob, keep):
    with pytest.raises(BackupTruncated):
        open_backup(blob[:keep] if keep else blob[:-1], RECOVERY_SECRET)


def test_trailing_bytes_are_tampering(blob):
    with pytest.raises(BackupTampered):
        open_backup(blob + b"x", RECOVERY_SECRET)


def test_not_a_backup():
    with pytest.raises(BackupTampered, match="not an idp-authenticator backup"):
        open_backup(b"PK\x03\x04 a zip file, say" * 10, RECOVERY_SECRET)


@pytest.mark.parametrize("version,message", [(2, "newer"), (0, "unknown format version 0")])
def test_other_versions(blob, version, message):
    altered = blob[:8] + struct.pack(">H", version) + blob[10:]
    with pytest.raises(UnsupportedBackupVersion, match=message):
        open_backup(altered, RECOVERY_SECRET)


@pytest.mark.parametrize("secret", ["AE", "JBSWY3DP"])  # 8 and 40 bits: `add` wants 80 at least
def test_a_totp_secret_that_add_refuses_does_not_restore(secret):
    """A backup brings in nothing `add` would refuse (docs/backup-format.md): a secret under 80 bits
    restored and gave codes until an audit saw it."""
    entry = {"type": "totp", "issuer": "ACME", "name": "alice",
             "totp": {"secret": secret, "algorithm": "SHA1", "digits": 6, "period": 30}}
    with pytest.raises(BackupTampered):
        decode_payload(json.dumps({"created_at": "2026-01-01T00:00:00Z", "accounts": [entry]}).encode())


def test_a_lower_case_totp_secret_restores_as_add_keeps_it():
    entry = {"type": "totp", "issuer": "ACME", "name": "alice",
             "totp": {"secret": "jbswy3dpehpk3pxp", "algorithm": "SHA1", "digits": 6, "period": 30}}
    [account] = decode_payload(json.dumps({"created_at": "2026-01-01T00:00:00Z", "accounts": [entry]}).encode()).accounts
    assert account.totp.secret == "JBSWY3DPEHPK3PXP"


def test_hostile_kdf_parameters_are_refused_before_running(blob):
    altered = bytearray(blob)
    altered[11] = 40  # n = 2**40
    with pytest.raises(BackupTampered, match="key derivation"):
        open_backup(bytes(altered), RECOVERY_SECRET)


def test_directory_storage(tmp_path, blob):
    storage = DirectoryStorage(tmp_path)
    with pytest.raises(NoBackupFound):
        storage.read()
    storage.write(blob)
    assert storage.read() == blob
    assert (tmp_path / BACKUP_FILE).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [BACKUP_FILE]
    with pytest.raises(StorageUnreachable, match="no such directory"):
        DirectoryStorage(tmp_path / "missing").read()
    with pytest.raises(StorageUnreachable, match="not a directory"):
        DirectoryStorage(tmp_path / BACKUP_FILE).write(blob)


def test_the_documented_reader_opens_a_real_backup(blob):
    """docs/backup-format.md must stay true: run its minimal reader on our output."""
    from authenticator_testkit import REPO

    text = (REPO / "docs" / "backup-format.md").read_text()
    code = next(block.split("\n", 1)[1] for block in text.split("```python")[1:] if "def read_backup" in block)
    namespace = {}
    exec(code.split("```")[0], namespace)
    document = namespace["read_backup"](blob, RECOVERY_SECRET)
    assert [a["name"] for a in document["accounts"]] == ["alice", "alice@work.example"]
    with pytest.raises(ValueError, match="wrong recovery secret"):
        namespace["read_backup"](blob, "other")


@pytest.mark.parametrize("log2_n,r,p", [
    (20, 8, 1),  # 1 GiB: within each old bound, a MemoryError where memory is short
    (17, 8, 16),  # 128 MiB, but sixteen times the work (about a minute of CPU)
    (18, 32, 1),
    (17, 8, 5),
])
def test_scrypt_work_beyond_four_times_the_apps_own_is_refused_before_running(blob, log2_n, r, p):
    altered = bytearray(blob)
    altered[11] = log2_n
    struct.pack_into(">HH", altered, 12, r, p)
    with pytest.raises(BackupTampered, match="unusable key derivation parameters"):
        open_backup(bytes(altered), RECOVERY_SECRET)


def test_the_parameters_the_app_writes_are_within_the_bounds():
    from authenticator import crypto

    crypto.KdfParams(n=crypto.BACKUP_N).validate()  # backups
    crypto.KdfParams(n=crypto.DEFAULT_N).validate()  # the local store
    crypto.KdfParams(n=crypto.BACKUP_N, p=4).validate()  # four times a backup: the most accepted
    crypto.KdfParams(n=2**19, r=8).validate()  # 512 MiB, the most memory accepted
    with pytest.raises(crypto.InvalidKdfParams):
        crypto.KdfParams(n=2**19, r=9).validate()


def test_directory_storage_refuses_a_file_larger_than_any_backup(tmp_path):
    """(That it is not read first: test_a_backup_file_of_4_gib_is_refused_without_reading_it.)"""
    from authenticator.backup.format import MAX_FILE_SIZE
    from authenticator.errors import BackupTooLarge

    with open(tmp_path / BACKUP_FILE, "wb") as handle:
        handle.truncate(MAX_FILE_SIZE + 1)  # sparse: takes no room
    with pytest.raises(BackupTooLarge, match=f"is not a backup \\({MAX_FILE_SIZE + 1} bytes"):
        DirectoryStorage(tmp_path).read()
    with open(tmp_path / BACKUP_FILE, "r+b") as handle:
        handle.truncate(MAX_FILE_SIZE)
    assert len(DirectoryStorage(tmp_path).read()) == MAX_FILE_SIZE


def test_a_backup_larger_than_a_reader_accepts_is_not_written(monkeypatch):
    from authenticator.backup import format as backup_format
    from authenticator.errors import AuthenticatorError

    monkeypatch.setattr(backup_format, "MAX_FILE_SIZE", 1000)
    with pytest.raises(AuthenticatorError, match="too many accounts for one backup"):
        seal_backup(new_backup_key(RECOVERY_SECRET), b"x" * 1000)


def _payload(*entries) -> bytes:
    return json.dumps({"created_at": "2026-01-01T00:00:00Z", "accounts": list(entries)}).encode()


def _totp(**fields) -> dict:
    entry = {"type": "totp", "issuer": "ACME", "name": "alice",
             "totp": {"secret": "JBSWY3DPEHPK3PXP", "algorithm": "SHA1", "digits": 6, "period": 30}}
    entry.update(fields)
    return entry


def _push(**fields) -> dict:
    push = {"issuer_url": "https://idp.work.example", "username": "alice", "account_id": "u-42", "kind": "work"}
    push.update(fields)
    return {"type": "push", "issuer": "Work", "name": "alice", "push": push}


@pytest.mark.parametrize("entry", [
    _totp(issuer="I" * 257),
    _totp(name="n" * 257),
    _totp(name="n" * (15 << 20)),  # a 15 MiB name was restored
    _totp(totp={"secret": "A" * 1025, "algorithm": "SHA1", "digits": 6, "period": 30}),
    _push(username="u" * 257),
    _push(account_id=42),
    _push(account_id={"a": 1}),
    _push(account_id=["u-42"]),
    _push(account_id="x" * 257),
    _push(issuer_url="http://evil.example"),  # recover --password would send the password there
    _push(issuer_url="ftp://idp.example"),
    _push(issuer_url="https://"),
    _push(issuer_url="http://[::1"),
    # urlsplit reads 127.0.0.1 (loopback: http allowed); requests would send the password to
    # evil.example, in clear.
    _push(issuer_url="http://evil.example\\@127.0.0.1"),
    _push(issuer_url="https://evil.example@idp.work.example"),
], ids=["issuer", "name", "huge-name", "secret", "username", "id-int", "id-object", "id-list", "id-long",
        "http", "ftp", "no-host", "malformed", "backslash", "user-name"])
def test_restore_applies_the_limits_add_applies(entry):
    with pytest.raises(BackupTampered):
        decode_payload(_payload(entry))


@pytest.mark.parametrize("entry", [
    _totp(issuer="I" * 256, name="n" * 256),
    _push(account_id=None),
    _push(issuer_url="http://127.0.0.1:5000"),
    _push(issuer_url="http://localhost:8080/idp"),
])
def test_what_add_takes_restores(entry):
    [account] = decode_payload(_payload(entry)).accounts
    assert account.name == entry["name"]


def test_a_payload_of_more_than_10000_accounts_is_refused():
    from authenticator.backup.payload import MAX_ACCOUNTS

    entries = [_totp(name=f"user{i}") for i in range(MAX_ACCOUNTS)]
    assert len(decode_payload(_payload(*entries)).accounts) == MAX_ACCOUNTS
    with pytest.raises(BackupTampered, match="holds 10001 accounts, more than 10000"):
        decode_payload(_payload(*entries, _totp(name="one more")))


def test_adding_many_accounts_at_once_is_not_quadratic(tmp_path):
    """60,000 accounts took 618 s to restore under the store lock: each add scanned every account."""
    import time

    from authenticator import crypto
    from authenticator.store import Vault

    vault = Vault(tmp_path, crypto.DerivedKeys(b"k" * 32, b"c" * 32), b"h", [], None, new=True)
    accounts = [Account(id="", type=TOTP, issuer="ACME", name=f"user{i}", totp=TotpParams(secret="JBSWY3DPEHPK3PXP"))
                for i in range(20_000)]
    started = time.monotonic()
    stored = vault.add_all(accounts)
    assert time.monotonic() - started < 5  # about 0.1 s; the quadratic way took about a minute
    assert len({a.id for a in stored}) == 20_000 and vault.accounts == stored
    with pytest.raises(AuthenticatorError, match="already exists"):
        vault.add_all([accounts[5]])
    with pytest.raises(AuthenticatorError, match="already exists"):
        Vault(tmp_path, vault._keys, b"h", [], None).add_all([accounts[0], accounts[0]])


@pytest.mark.parametrize("offset, value", [(11, 3), (12, 4), (11, 1)])  # log2(n) 4 -> 3 or 1; r 8 -> 4
def test_lowered_kdf_parameters_are_tampering_not_a_wrong_secret(blob, offset, value):
    """The file's scrypt cost lowered below what this app writes (here the test cost, n = 16, r = 8):
    refused as tampered before any key is derived with it, rather than run and reported as "wrong
    recovery secret", which would send the user looking for a typo."""
    altered = bytearray(blob)
    if offset == 11:
        altered[11] = value
    else:
        struct.pack_into(">H", altered, 12, value)
    with pytest.raises(BackupTampered, match="weaker than"):
        open_backup(bytes(altered), RECOVERY_SECRET)


def _backup_with_cost(log2_n: int) -> bytes:
    from authenticator import crypto
    from authenticator.backup.format import PURPOSE, BackupKey

    params, salt = crypto.KdfParams(n=2**log2_n, p=1), crypto.new_salt()
    key = BackupKey(params, salt, crypto.derive_keys(RECOVERY_SECRET, salt, params, PURPOSE))
    return seal_backup(key, encode_payload(ACCOUNTS[:1], "2023-11-14T22:13:20Z"))


def test_without_the_test_cost_a_reader_refuses_less_than_this_app_ever_wrote(monkeypatch):
    """Backups were written with n = 2**15 before n = 2**17: those open. One made with less, even
    with the right recovery secret (another tool, or whoever knows the secret and made a file quick
    to guess), is not decrypted with those parameters."""
    monkeypatch.delenv("IDP_AUTHENTICATOR_SCRYPT_N")
    assert decode_payload(open_backup(_backup_with_cost(15), RECOVERY_SECRET)).accounts[0].name == "alice"
    with pytest.raises(BackupTampered, match="weaker than"):
        open_backup(_backup_with_cost(14), RECOVERY_SECRET)
