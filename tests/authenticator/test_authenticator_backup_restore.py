"""Backup and restore end to end through the CLI, as a user moving to a new phone would."""

import json
import struct

import pytest

from authenticator.accounts import PUSH, Account, PushData
from authenticator.backup.storage import BACKUP_FILE
from authenticator.store import Vault
from authenticator_testkit import FIXED_TIME, PASSPHRASE, SECRET, TOTP_URI, one_line_error

OTHER_URI = f"otpauth://totp/Bank:bob?secret={SECRET}&algorithm=SHA512&digits=8&period=60"


def codes(app) -> dict:
    listed = json.loads(app.ok("--json", "list"))
    return {f"{a['issuer']}:{a['name']}": json.loads(app.ok("--json", "code", a["id"]))["code"]
            for a in listed if a["type"] == "totp"}


@pytest.fixture
def backed_up(make_app, tmp_path):
    """An old phone with two TOTP accounts and automatic backup to tmp/cloud."""
    old = make_app("old")
    old.ok("add", TOTP_URI)
    old.ok("backup", "--enable", "--to", str(tmp_path / "cloud"))
    old.ok("add", OTHER_URI)  # automatic backup picks this one up
    return old, tmp_path / "cloud"


def test_restore_on_a_new_device_gives_identical_codes(backed_up, make_app):
    old, cloud = backed_up
    new = make_app("new")
    assert "restored 2 account(s)" in new.ok("restore", "--from", str(cloud))
    assert codes(new) == codes(old)
    assert len(codes(new)) == 2
    later = {"IDP_AUTHENTICATOR_NOW": str(FIXED_TIME + 3600)}
    assert new.ok("code", "bob", env=later) == old.ok("code", "bob", env=later)


def test_automatic_backup_follows_removals(backed_up, make_app):
    old, cloud = backed_up
    old.ok("remove", "bob")
    new = make_app("new")
    new.ok("restore", "--from", str(cloud))
    assert list(codes(new)) == ["ACME:alice@example.com"]


def test_backup_now_and_disable(backed_up):
    old, cloud = backed_up
    status = json.loads(old.ok("--json", "backup"))
    assert status["enabled"] and status["location"] == str(cloud)
    before = (cloud / BACKUP_FILE).read_bytes()
    old.ok("backup", "--now")
    assert (cloud / BACKUP_FILE).read_bytes() != before  # fresh nonce every time
    old.ok("backup", "--disable")
    assert json.loads(old.ok("--json", "backup")) == {"enabled": False}
    frozen = (cloud / BACKUP_FILE).read_bytes()
    old.ok("remove", "bob")
    assert (cloud / BACKUP_FILE).read_bytes() == frozen
    assert "not enabled" in one_line_error(old.run("backup", "--now"))


def test_backup_holds_no_plaintext_secret(backed_up):
    _, cloud = backed_up
    blob = (cloud / BACKUP_FILE).read_bytes()
    assert SECRET.encode() not in blob and b"alice" not in blob


def test_backup_enable_needs_a_location(app):
    app.ok("add", TOTP_URI)
    assert "--to" in one_line_error(app.run("backup", "--enable"))


def test_restore_refused_over_existing_accounts(backed_up, make_app):
    _, cloud = backed_up
    busy = make_app("busy")
    busy.ok("add", f"otpauth://totp/Mine:me?secret={SECRET}")
    before = busy.files()
    result = busy.run("restore", "--from", str(cloud))
    assert "remove them first so that an old backup never overwrites newer data" in one_line_error(result)
    assert result.returncode == 16
    assert busy.files() == before


def _failures(cloud, tmp_path):
    blob = (cloud / BACKUP_FILE).read_bytes()
    tampered = bytearray(blob)
    tampered[-5] ^= 0x40
    cases = {
        "tampered": (bytes(tampered), {}),
        "truncated": (blob[: len(blob) // 2], {}),
        "newer": (blob[:8] + struct.pack(">H", 7) + blob[10:], {}),
        "wrong secret": (blob, {"IDP_AUTHENTICATOR_RECOVERY_SECRET": "a guess"}),
    }
    for name, (content, env) in cases.items():
        directory = tmp_path / name.replace(" ", "-")
        directory.mkdir(parents=True)
        (directory / BACKUP_FILE).write_bytes(content)
        yield name, directory, env
    empty = tmp_path / "empty"
    empty.mkdir(parents=True)
    yield "missing", empty, {}
    yield "no such directory", tmp_path / "nowhere", {}
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    yield "not a directory", not_a_dir, {}


EXPECTED = {
    "tampered": (12, "tampered with"),
    "truncated": (13, "truncated"),
    "newer": (14, "format version 7, newer than this app supports"),
    "wrong secret": (11, "wrong recovery secret"),
    "missing": (10, "no backup at"),
    "no such directory": (15, "unreachable: no such directory"),
    "not a directory": (15, "unreachable: not a directory"),
}


def test_each_failure_has_its_own_message_and_changes_nothing(backed_up, make_app, tmp_path):
    _, cloud = backed_up
    fresh = make_app("fresh")
    seen_messages = set()
    for name, location, env in _failures(cloud, tmp_path / "cases"):
        result = fresh.run("restore", "--from", str(location), env=env)
        status, fragment = EXPECTED[name]
        message = one_line_error(result)
        assert fragment in message, (name, message)
        assert result.returncode == status, (name, result.returncode)
        assert fresh.files() == {}, name  # a fresh device stays fresh
        seen_messages.add(message)
    assert len(seen_messages) == len(EXPECTED)


def test_failed_restore_leaves_an_existing_empty_store_untouched(backed_up, make_app, tmp_path):
    _, cloud = backed_up
    device = make_app("emptied")
    device.ok("add", TOTP_URI)
    device.ok("remove", "alice@example.com")
    before = device.files()
    result = device.run("restore", "--from", str(cloud), env={"IDP_AUTHENTICATOR_RECOVERY_SECRET": "nope"})
    assert result.returncode == 11
    assert device.files() == before
    device.ok("restore", "--from", str(cloud))  # the right secret then works on the same device
    assert len(codes(device)) == 2


def test_push_accounts_come_back_needing_verification(make_app, tmp_path):
    old = make_app("old")
    vault = Vault.create(old.home, PASSPHRASE)
    vault.add(Account(id="", type=PUSH, issuer="Work", name="alice",
                      push=PushData(issuer_url="https://idp.work.example", username="alice", kind="work",
                                    account_id="u-1", device_id="d-1", device_private_key="PRIVATE-PEM")))
    vault.save()
    old.ok("add", TOTP_URI)
    old.ok("backup", "--enable", "--to", str(tmp_path / "cloud"))
    assert b"PRIVATE-PEM" not in (tmp_path / "cloud" / BACKUP_FILE).read_bytes()

    new = make_app("new")
    assert "1 push account(s) need verification" in new.ok("restore", "--from", str(tmp_path / "cloud"))
    listed = {a["type"]: a for a in json.loads(new.ok("--json", "list"))}
    assert listed["push"]["status"] == "needs_verification"
    assert listed["totp"]["status"] == "active"
    assert "needs verification" in new.ok("list")
    restored = next(a for a in Vault.open(new.home, PASSPHRASE).accounts if a.type == PUSH)
    assert restored.push.device_private_key is None and restored.push.device_id is None
    assert (restored.push.issuer_url, restored.push.account_id, restored.push.kind) == (
        "https://idp.work.example", "u-1", "work")


def test_restore_with_secret_from_file(backed_up, make_app, tmp_path):
    _, cloud = backed_up
    secret_file = tmp_path / "recovery.txt"
    from authenticator_testkit import RECOVERY_SECRET

    secret_file.write_text(RECOVERY_SECRET + "\n")
    new = make_app("new")
    new.ok("restore", "--from", str(cloud), "--recovery-secret-file", str(secret_file),
           env={"IDP_AUTHENTICATOR_RECOVERY_SECRET": None})
    assert len(codes(new)) == 2


def test_unreachable_automatic_backup_warns_but_keeps_the_change(backed_up):
    old, cloud = backed_up
    cloud.rename(cloud.with_name("cloud-unmounted"))
    result = old.run("remove", "bob")
    assert result.returncode == 0
    assert "warning: automatic backup failed" in result.stderr and "unreachable" in result.stderr
    assert list(codes(old)) == ["ACME:alice@example.com"]


def test_enabling_backup_on_a_new_device_does_not_overwrite_the_old_backup(backed_up, make_app):
    """A new phone pointed at the folder holding the only backup: restore first, or say --replace."""
    _, cloud = backed_up
    before = (cloud / BACKUP_FILE).read_bytes()
    fresh = make_app("fresh")
    result = fresh.run("backup", "--enable", "--to", str(cloud))
    assert result.returncode == 17 and "already holds a backup" in one_line_error(result)
    assert (cloud / BACKUP_FILE).read_bytes() == before
    assert fresh.run("restore", "--from", str(cloud)).returncode == 0  # still there, still whole
    fresh.ok("backup", "--enable", "--to", str(cloud))  # it holds nothing the restored device lacks
    other = make_app("other")
    other.ok("backup", "--enable", "--to", str(cloud), "--replace")


def test_a_restored_backup_must_give_codes(make_app, tmp_path):
    """Contents that pass authentication but break the format (digits 6.0, a secret that is not
    base32, a period of a day) are refused as tampered, not restored to crash `code` later."""
    from authenticator.backup import format as backup_format
    from authenticator_testkit import RECOVERY_SECRET

    key = backup_format.new_backup_key(RECOVERY_SECRET)
    for totp in ({"secret": SECRET, "algorithm": "SHA1", "digits": 6.0, "period": 30},
                 {"secret": "not*base32", "algorithm": "SHA1", "digits": 6, "period": 30},
                 {"secret": SECRET, "algorithm": "SHA1", "digits": 6, "period": 86400}):
        payload = json.dumps({"created_at": "2026-01-01T00:00:00Z", "accounts": [
            {"type": "totp", "issuer": "ACME", "name": "alice", "totp": totp}]}).encode()
        location = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
        location.mkdir()
        (location / BACKUP_FILE).write_bytes(backup_format.seal_backup(key, payload))
        fresh = make_app(f"fresh-{location.name}")
        result = fresh.run("restore", "--from", str(location))
        assert result.returncode == 12 and "not valid" in one_line_error(result), totp
        assert fresh.files() == {}


def test_a_recovery_secret_must_be_long_and_not_the_passphrase(app, tmp_path):
    """It guards the backup wherever it is stored, against guesses made offline."""
    from authenticator_testkit import PASSPHRASE

    app.ok("add", TOTP_URI)
    short = app.run("backup", "--enable", "--to", str(tmp_path / "cloud"),
                    env={"IDP_AUTHENTICATOR_RECOVERY_SECRET": "a"})
    assert short.returncode != 0 and "at least 12 characters" in one_line_error(short)
    same = app.run("backup", "--enable", "--to", str(tmp_path / "cloud"),
                   env={"IDP_AUTHENTICATOR_RECOVERY_SECRET": PASSPHRASE})
    assert same.returncode != 0 and "differ from this device's passphrase" in one_line_error(same)
    assert not (tmp_path / "cloud" / BACKUP_FILE).exists()


def test_backups_use_the_stronger_scrypt_cost(monkeypatch):
    from authenticator import crypto
    from authenticator.backup import format as backup_format

    monkeypatch.delenv("IDP_AUTHENTICATOR_SCRYPT_N")
    assert backup_format.new_backup_key("recovery words kept on paper").kdf.n == 2**17
    assert crypto.KdfParams.for_new_file().n == 2**15  # the local store, derived at every command
