"""Backup and restore end to end through the CLI, as a user moving to a new phone would."""

import json
import os
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


def test_restore_shows_when_the_backup_was_written(backed_up, make_app):
    """Someone who can write to the synced folder can put an older backup (same key) back: it restores
    like the newest, so restore says when it was written, text and --json alike."""
    old, cloud = backed_up
    later = {"IDP_AUTHENTICATOR_NOW": str(FIXED_TIME + 86400)}
    old.ok("remove", "bob", env=later)  # the backup is written again, a day later
    out = make_app("new").ok("restore", "--from", str(cloud))
    assert out.startswith("restored 1 account(s) from the backup written at 2023-11-15T22:13:20Z; ")
    restored = json.loads(make_app("newer").ok("--json", "restore", "--from", str(cloud)))
    assert restored["created_at"] == "2023-11-15T22:13:20Z"
    assert [(a["issuer"], a["name"]) for a in restored["accounts"]] == [("ACME", "alice@example.com")]


@pytest.mark.parametrize("created_at", [None, 1700000000, "", "yesterday", "2023-11-14 22:13:20",
                                        "2023-11-14T22:13:20+00:00", "2023-13-40T22:13:20Z"], ids=repr)
def test_a_backup_without_a_readable_creation_time_still_restores(make_app, tmp_path, created_at):
    """The format does not require created_at (another platform's writer may leave it out): such a backup
    restores, and restore says its time is unknown."""
    from authenticator.backup import format as backup_format
    from authenticator_testkit import RECOVERY_SECRET

    document = {"accounts": [{"type": "totp", "issuer": "ACME", "name": "alice",
                              "totp": {"secret": SECRET, "algorithm": "SHA1", "digits": 6, "period": 30}}]}
    if created_at is not None:
        document["created_at"] = created_at
    location = tmp_path / "cloud"
    location.mkdir()
    key = backup_format.new_backup_key(RECOVERY_SECRET)
    (location / BACKUP_FILE).write_bytes(backup_format.seal_backup(key, json.dumps(document).encode()))
    out = make_app("new").ok("restore", "--from", str(location))
    assert out.startswith("restored 1 account(s) from the backup written at an unknown time; ")
    restored = json.loads(make_app("newer").ok("--json", "restore", "--from", str(location)))
    assert restored["created_at"] is None and len(restored["accounts"]) == 1


def test_restore_says_the_new_device_does_not_back_up_yet(backed_up, make_app):
    """The backup setting lives in the old phone's store, not in the backup: a restored phone backs up
    nothing until its owner enables it, and restore says so (it used to say nothing, and the new phone
    went on unbacked-up)."""
    _old, cloud = backed_up
    new = make_app("new")
    out = new.ok("restore", "--from", str(cloud))
    assert out == (f"restored 2 account(s) from the backup written at 2023-11-14T22:13:20Z; automatic backup "
                   f"is off on this device: idp-authenticator --home {new.home} backup --enable --to {cloud}\n")
    assert json.loads(new.ok("--json", "backup")) == {"enabled": False}
    new.ok("backup", "--enable", "--to", str(cloud))  # as the line says: the folder holds nothing new
    assert json.loads(new.ok("--json", "backup"))["enabled"]


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
    assert one_line_error(result) == (
        "idp-authenticator: this device already holds 1 account(s) and restore never overwrites them (an old "
        "backup must not replace newer data): restore onto a new app home instead (idp-authenticator --home "
        "NEW_DIR restore --from DIR), rather than removing them here, as each removal rewrites this device's "
        "automatic backup")
    assert result.returncode == 16
    assert busy.files() == before


def test_removing_every_account_leaves_the_backup_to_restore_whole(backed_up, make_app, tmp_path):
    """The old advice (remove the accounts, then restore) emptied the backup being restored: each removal
    rewrote it, and restore then said "restored 0 account(s)". An automatic backup no longer replaces a
    backup holding accounts with an empty one; `backup --now` still does, on purpose."""
    old, cloud = backed_up
    before = codes(old)
    old.ok("remove", "bob")  # one account left: backed up as usual
    result = old.run("remove", "alice@example.com")
    assert result.returncode == 0
    assert result.stderr == (
        f"idp-authenticator: warning: automatic backup skipped: this device holds no accounts now, and the backup "
        f"at {cloud} still holds 1 account(s): it is left as it is (it may be the one to restore, onto a new app "
        f"home: --home NEW_DIR restore --from DIR); to empty it on purpose: idp-authenticator --home {old.home} "
        "backup --now\n")
    assert "restored 1 account(s)" in old.ok("restore", "--from", str(cloud))
    assert codes(old) == {"ACME:alice@example.com": before["ACME:alice@example.com"]}

    old.ok("remove", "alice@example.com")  # skipped again: the backup keeps its account
    old.ok("backup", "--now")  # an explicit backup empties it
    result = make_app("new").run("restore", "--from", str(cloud))
    assert result.returncode == 19
    assert one_line_error(result) == (f"idp-authenticator: the backup at {cloud} (written at 2023-11-14T22:13:20Z) "
                                      "holds no accounts: nothing to restore")
    assert not make_app("new").home.exists()


def test_an_emptied_device_backs_up_again_once_it_holds_accounts(backed_up):
    old, cloud = backed_up
    old.ok("remove", "bob")
    old.ok("remove", "alice@example.com")
    frozen = (cloud / BACKUP_FILE).read_bytes()
    result = old.run("add", OTHER_URI)
    assert result.returncode == 0 and result.stderr == ""
    assert (cloud / BACKUP_FILE).read_bytes() != frozen


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


def test_restore_from_the_backup_file_itself_names_its_directory(backed_up, make_app):
    """`--from` takes the directory (`backup --to`); given the file in it, restore says which to give."""
    _, cloud = backed_up
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(cloud / BACKUP_FILE))
    assert result.returncode == 15
    assert one_line_error(result).endswith(f"is unreachable: not a directory (give the directory that holds "
                                           f"{BACKUP_FILE}: {cloud})")
    assert fresh.files() == {}


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


def backed_up_names(cloud) -> list:
    from authenticator.backup.service import read_backup
    from authenticator.backup.storage import DirectoryStorage
    from authenticator_testkit import RECOVERY_SECRET

    return sorted(a.name for a in read_backup(DirectoryStorage(cloud), lambda: RECOVERY_SECRET).accounts)


THIRD_URI = f"otpauth://totp/Shop:carol?secret={SECRET}"
FOURTH_URI = f"otpauth://totp/Club:dave?secret={SECRET}"


@pytest.fixture
def taken_over(backed_up, make_app):
    """The old phone backs up to cloud; a new phone restores from it, enables backup to the same folder
    and adds an account there. The old phone still has automatic backup to cloud."""
    old, cloud = backed_up
    new = make_app("new")
    new.ok("restore", "--from", str(cloud))
    new.ok("backup", "--enable", "--to", str(cloud))
    new.ok("add", THIRD_URI)
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol"]
    return old, new, cloud


def test_the_old_phone_does_not_overwrite_a_backup_the_new_phone_took_over(taken_over):
    old, new, cloud = taken_over
    before = (cloud / BACKUP_FILE).read_bytes()
    result = old.run("add", FOURTH_URI)
    assert result.returncode == 0 and "added" in result.stdout  # the change itself is kept
    warning = result.stderr.strip()
    assert warning == (f"idp-authenticator: warning: automatic backup skipped: the backup at {cloud} was replaced "
                       "by another device since this one last wrote it, and is left as it is; to make this "
                       f"device's accounts the backup there: idp-authenticator --home {old.home} backup --enable "
                       f"--to {cloud} --replace (or stop: idp-authenticator --home {old.home} backup --disable)")
    assert (cloud / BACKUP_FILE).read_bytes() == before  # carol is still backed up
    assert old.run("remove", "bob").stderr.count("automatic backup skipped") == 1
    # The new phone goes on backing up: the file there is still the one it wrote.
    new.ok("remove", "bob")
    assert backed_up_names(cloud) == ["alice@example.com", "carol"]


def test_a_new_phone_enabling_backup_before_restoring_is_told_that_replace_would_empty_it(backed_up, make_app):
    """The way out offered beside "restore it first" was "overwrite it with this device's accounts
    (--replace)": on a new phone holding none, that is emptying the only backup."""
    _old, cloud = backed_up
    before = (cloud / BACKUP_FILE).read_bytes()
    new = make_app("new")
    result = new.run("backup", "--enable", "--to", str(cloud))
    assert result.returncode == 17
    assert one_line_error(result).endswith("already holds a backup with 2 account(s) this device lacks: restore it "
                                           "first (restore --from DIR), or empty it on purpose (this device holds "
                                           "no accounts: backup --enable --replace)")
    assert (cloud / BACKUP_FILE).read_bytes() == before


def test_the_old_phone_says_so_on_backup_now_and_enable(taken_over):
    old, _new, cloud = taken_over
    before = (cloud / BACKUP_FILE).read_bytes()
    now = old.run("backup", "--now")
    assert now.returncode == 17 and "was replaced by another device" in one_line_error(now)
    again = old.run("backup", "--enable", "--to", str(cloud))  # its own location, but no longer its file
    assert again.returncode == 17
    assert "already holds a backup with 1 account(s) this device lacks" in one_line_error(again)
    assert (cloud / BACKUP_FILE).read_bytes() == before
    old.ok("backup", "--enable", "--to", str(cloud), "--replace")  # taken back on purpose
    assert backed_up_names(cloud) == ["alice@example.com", "bob"]
    old.ok("add", FOURTH_URI)  # and its automatic backup runs again
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "dave"]


def test_settings_kept_before_the_fingerprint_compare_the_salt(taken_over, make_app):
    """A store whose backup settings predate the fingerprint: the file another device wrote has
    another salt (every --enable draws one), the device's own file its own."""
    import dataclasses

    old, _new, cloud = taken_over
    vault = Vault.open(old.home, PASSPHRASE)
    vault.backup = dataclasses.replace(vault.backup, written_sha256=None)
    vault.save()
    before = (cloud / BACKUP_FILE).read_bytes()
    assert "automatic backup skipped" in old.run("add", FOURTH_URI).stderr
    assert (cloud / BACKUP_FILE).read_bytes() == before

    mine = make_app("mine")
    mine.ok("add", TOTP_URI)
    mine.ok("backup", "--enable", "--to", str(cloud.with_name("mine-cloud")))
    vault = Vault.open(mine.home, PASSPHRASE)
    vault.backup = dataclasses.replace(vault.backup, written_sha256=None)
    vault.save()
    result = mine.run("add", THIRD_URI)
    assert result.returncode == 0 and not result.stderr
    assert backed_up_names(cloud.with_name("mine-cloud")) == ["alice@example.com", "carol"]
    assert Vault.open(mine.home, PASSPHRASE).backup.written_sha256  # from now on, the fingerprint


def test_a_removed_backup_file_is_written_again(backed_up):
    old, cloud = backed_up
    (cloud / BACKUP_FILE).unlink()
    result = old.run("remove", "bob")
    assert result.returncode == 0 and not result.stderr
    assert backed_up_names(cloud) == ["alice@example.com"]


def test_enable_says_which_condition_failed(backed_up, make_app):
    """Just restored from the folder, enabling with another recovery secret is refused (17): because
    that backup does not open with it, not because it should be restored first."""
    _, cloud = backed_up
    new = make_app("new")
    new.ok("restore", "--from", str(cloud))
    before = (cloud / BACKUP_FILE).read_bytes()
    result = new.run("backup", "--enable", "--to", str(cloud),
                     env={"IDP_AUTHENTICATOR_RECOVERY_SECRET": "another secret of some words"})
    message = one_line_error(result)
    assert result.returncode == 17
    assert f"{cloud} already holds a backup that does not open with this recovery secret" in message
    assert "restore it first" not in message and "--replace" in message
    assert (cloud / BACKUP_FILE).read_bytes() == before
    new.ok("backup", "--enable", "--to", str(cloud))  # with the secret it was made with

    (cloud / BACKUP_FILE).write_bytes(b"not a backup at all")
    other = make_app("other")
    result = other.run("backup", "--enable", "--to", str(cloud))
    assert result.returncode == 17 and "cannot read as a backup" in one_line_error(result)


def _sealed_payload(location, payload: bytes):
    from authenticator.backup import format as backup_format
    from authenticator_testkit import RECOVERY_SECRET

    location.mkdir()
    (location / BACKUP_FILE).write_bytes(backup_format.seal_backup(backup_format.new_backup_key(RECOVERY_SECRET),
                                                                   payload))
    return location


def test_a_deeply_nested_payload_is_reported_as_tampered(make_app, tmp_path):
    """It decrypts (the right secret), but json recurses too deep: one line and 12, not a traceback."""
    payload = b'{"created_at": "2026-01-01T00:00:00Z", "accounts": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    location = _sealed_payload(tmp_path / "deep", payload)
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(location))
    assert result.returncode == 12 and "not valid" in one_line_error(result)
    assert not fresh.home.exists()


def test_the_same_account_twice_is_reported_as_tampered_and_creates_nothing(make_app, tmp_path):
    entry = {"type": "totp", "issuer": "X", "name": "x",
             "totp": {"secret": SECRET, "algorithm": "SHA1", "digits": 6, "period": 30}}
    payload = json.dumps({"created_at": "2026-01-01T00:00:00Z", "accounts": [entry, entry]}).encode()
    location = _sealed_payload(tmp_path / "twice", payload)
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(location))
    assert result.returncode == 12
    assert one_line_error(result) == ("idp-authenticator: the backup's contents are not valid (authenticated, "
                                      "but it holds totp account X:x twice)")
    assert not fresh.home.exists()


@pytest.mark.parametrize("entry", [
    {"type": "totp", "issuer": "X", "name": "n" * 100_000,
     "totp": {"secret": SECRET, "algorithm": "SHA1", "digits": 6, "period": 30}},
    {"type": "push", "issuer": "evil", "name": "alice",
     "push": {"issuer_url": "http://evil.example", "username": "alice", "account_id": None, "kind": "work"}},
    {"type": "push", "issuer": "idp", "name": "alice",
     "push": {"issuer_url": "https://idp.example", "username": "alice", "account_id": {"x": 1}, "kind": "work"}},
], ids=["long-name", "plain-http-server", "account-id-object"])
def test_restore_refuses_what_add_would_refuse_and_creates_nothing(make_app, tmp_path, entry):
    payload = json.dumps({"created_at": "2026-01-01T00:00:00Z", "accounts": [entry]}).encode()
    location = _sealed_payload(tmp_path / "limits", payload)
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(location))
    assert result.returncode == 12 and "not valid" in one_line_error(result)
    assert not fresh.home.exists()


def test_a_first_command_failing_under_the_lock_leaves_no_home(backed_up, make_app):
    """The home (and its .lock) is made to take the lock; a failure after that removes it again."""
    _, cloud = backed_up
    fresh = make_app("fresh")
    no_passphrase = {"IDP_AUTHENTICATOR_PASSPHRASE": None}
    result = fresh.run("restore", "--from", str(cloud), env=no_passphrase)
    assert result.returncode == 1 and "no passphrase given" in one_line_error(result)
    assert not fresh.home.exists()
    result = fresh.run("add", TOTP_URI, env=no_passphrase)
    assert result.returncode == 1 and "no passphrase given" in one_line_error(result)
    assert not fresh.home.exists()
    fresh.ok("restore", "--from", str(cloud))  # and then it works
    assert sorted(p.name for p in fresh.home.iterdir()) == [".lock", "store-header.json", "store.bin"]


# --- hostile files: memory and size -------------------------------------------------------------

def test_scrypt_without_enough_memory_is_a_one_line_error(make_app, tmp_path):
    """N = 2**19, r = 8 is within the bounds (512 MiB); on a device that cannot spare it, scrypt raises
    MemoryError. (The header edit also breaks the tag, but scrypt runs first.)"""
    from authenticator.backup import format as backup_format
    from authenticator_testkit import RECOVERY_SECRET

    blob = bytearray(backup_format.seal_backup(backup_format.new_backup_key(RECOVERY_SECRET), b"{}"))
    blob[11] = 19
    location = tmp_path / "heavy"
    location.mkdir()
    (location / BACKUP_FILE).write_bytes(bytes(blob))
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(location), memory_limit_mib=300)
    assert one_line_error(result) == ("idp-authenticator: not enough memory to derive the key (scrypt needs "
                                      "512 MiB for this file's parameters)")
    assert result.returncode == 1 and fresh.files() == {}


def huge_backup_file(location):
    """What the header's 4-byte length allows: 80 + 2**32 - 1 bytes (sparse: it takes no room)."""
    location.mkdir(exist_ok=True)
    header = struct.pack(">8sHBBHH16s32s12sI", b"IDPAUTHB", 1, 1, 4, 8, 1, b"s" * 16, b"k" * 32, b"n" * 12,
                         2**32 - 1)
    with open(location / BACKUP_FILE, "wb") as handle:
        handle.write(header)
        handle.truncate(80 + 2**32 - 1)
    return location


def test_a_backup_file_of_4_gib_is_refused_without_reading_it(make_app, tmp_path):
    """Read whole, it would not fit in the 300 MiB the process may use here: the size is checked first."""
    location = huge_backup_file(tmp_path / "huge")
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(location), memory_limit_mib=300)
    assert one_line_error(result) == (f"idp-authenticator: {BACKUP_FILE} at {location} is not a backup "
                                      f"({80 + 2**32 - 1} bytes, more than any backup: {16 * 2**20})")
    assert result.returncode == 12 and fresh.files() == {}
    enable = fresh.run("backup", "--enable", "--to", str(location), memory_limit_mib=300)
    assert enable.returncode == 17 and "cannot read as a backup" in one_line_error(enable)


def test_an_automatic_backup_leaves_a_huge_file_alone(backed_up):
    old, cloud = backed_up
    huge_backup_file(cloud)
    result = old.run("remove", "bob", memory_limit_mib=300)
    assert result.returncode == 0 and "automatic backup skipped" in result.stderr
    assert (cloud / BACKUP_FILE).stat().st_size == 80 + 2**32 - 1


# --- a crash or a full disk around the backup file ----------------------------------------------

CRASH_AFTER_WRITING_THE_FILE = """
import os
from authenticator.backup.storage import DirectoryStorage
real_write = DirectoryStorage.write
def write_then_die(self, blob):
    real_write(self, blob)
    os._exit(70)
DirectoryStorage.write = write_then_die
"""

DISK_FULL_AFTER_WRITING_THE_FILE = """
import errno
from authenticator.backup.storage import DirectoryStorage
from authenticator.store import Vault
real_write, real_save = DirectoryStorage.write, Vault.save
written = []
def write(self, blob):
    real_write(self, blob)
    written.append(True)
def save(self):
    if written:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.home / "store.bin"))
    real_save(self)
DirectoryStorage.write, Vault.save = write, save
"""


def test_a_crash_between_the_backup_file_and_the_store_leaves_the_file_this_devices_own(backed_up):
    """The new file's SHA-256 is in the store (pending) before the file is written: after a crash the
    device does not take its own newest file for another device's."""
    old, cloud = backed_up
    crashed = old.run("add", THIRD_URI, prelude=CRASH_AFTER_WRITING_THE_FILE)
    assert crashed.returncode == 70
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol"]  # the file was written
    result = old.run("add", FOURTH_URI)
    assert result.returncode == 0 and result.stderr == ""
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol", "dave"]
    old.ok("backup", "--now")
    assert Vault.open(old.home, PASSPHRASE).backup.pending_sha256 is None


def test_a_crash_while_enabling_backup_again_leaves_the_old_file_this_devices_own(backed_up):
    old, cloud = backed_up
    crash_before_writing = CRASH_AFTER_WRITING_THE_FILE.replace("    real_write(self, blob)\n", "")
    assert old.run("backup", "--enable", "--to", str(cloud), prelude=crash_before_writing).returncode == 70
    result = old.run("add", THIRD_URI)
    assert result.returncode == 0 and result.stderr == ""
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol"]


def test_a_full_disk_after_the_backup_file_is_a_warning_and_the_file_stays_this_devices_own(backed_up):
    old, cloud = backed_up
    result = old.run("add", THIRD_URI, prelude=DISK_FULL_AFTER_WRITING_THE_FILE)
    assert result.returncode == 0 and result.stdout.startswith("added Shop:carol")
    assert result.stderr == (f"idp-authenticator: warning: automatic backup written, but this device could not "
                             f"record it (cannot write {old.home / 'store.bin'}: No space left on device); the "
                             "next backup still recognises it as this device's own\n")
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol"]
    result = old.run("add", FOURTH_URI)
    assert result.returncode == 0 and result.stderr == ""
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol", "dave"]


def test_a_full_disk_before_the_backup_file_is_a_warning_and_writes_nothing(backed_up):
    old, cloud = backed_up
    before = (cloud / BACKUP_FILE).read_bytes()
    full_from_the_second_save = DISK_FULL_AFTER_WRITING_THE_FILE.replace(
        "    if written:", "    written.append(False)\n    if len(written) > 1:")
    result = old.run("add", THIRD_URI, prelude=full_from_the_second_save)
    assert result.returncode == 0 and result.stdout.startswith("added Shop:carol")
    assert result.stderr.startswith("idp-authenticator: warning: automatic backup failed: cannot write ")
    assert (cloud / BACKUP_FILE).read_bytes() == before
    assert "carol" in old.ok("list")
    old.ok("add", FOURTH_URI)
    assert backed_up_names(cloud) == ["alice@example.com", "bob", "carol", "dave"]


def test_a_failed_enable_leaves_the_store_as_it_was(backed_up, tmp_path):
    old, _cloud = backed_up
    before = Vault.open(old.home, PASSPHRASE).backup
    unreachable_on_write = """
from authenticator.backup.storage import DirectoryStorage
def write(self, blob):
    raise self._unreachable("Input/output error")
DirectoryStorage.write = write
"""
    result = old.run("backup", "--enable", "--to", str(tmp_path / "other"), prelude=unreachable_on_write)
    assert result.returncode == 15 and "Input/output error" in one_line_error(result)
    assert Vault.open(old.home, PASSPHRASE).backup == before


def test_recover_with_a_full_disk_after_the_backup_keeps_the_recovered_key(make_app, tmp_path):
    """The account was saved with its new key: a warning about the backup's record, not "could not be
    saved here, revoke the device" (status 25)."""
    from authenticator.accounts import ACTIVE, NEEDS_VERIFICATION

    app = make_app("restored")
    vault = Vault.create(app.home, PASSPHRASE)
    stored = vault.add(Account(id="", type=PUSH, issuer="acme", name="alice@example.com",
                               push=PushData(issuer_url="https://idp.example", username="alice@example.com",
                                             status=NEEDS_VERIFICATION)))
    vault.save()
    app.ok("backup", "--enable", "--to", str(tmp_path / "cloud"))
    server_accepts = """
from authenticator import recover
from authenticator.push import keys
recover.recover_by_password = lambda account, key, reader: {"device_id": keys.device_id(key)}
"""
    result = app.run("recover", stored.id, "--password", prelude=server_accepts + DISK_FULL_AFTER_WRITING_THE_FILE)
    assert result.returncode == 0 and result.stdout.startswith("recovered acme:alice@example.com")
    assert "warning: automatic backup written, but this device could not record it" in result.stderr
    assert [a["status"] for a in json.loads(app.ok("--json", "list"))] == [ACTIVE]


# --- what sits where the backup belongs -----------------------------------------------------------

@pytest.fixture
def fifo_at_the_backup(tmp_path):
    location = tmp_path / "cloud"
    location.mkdir()
    os.mkfifo(location / BACKUP_FILE)
    return location


def test_a_fifo_at_the_backup_path_is_not_a_backup_and_does_not_hang(fifo_at_the_backup, make_app):
    """A blocking open() of a FIFO waits for a writer forever: restore hung."""
    fresh = make_app("fresh")
    result = fresh.run("restore", "--from", str(fifo_at_the_backup))
    assert result.returncode == 12
    assert one_line_error(result) == (f"idp-authenticator: {BACKUP_FILE} at {fifo_at_the_backup} is not a backup "
                                      "(not a regular file)")
    assert fresh.files() == {}


def test_backup_enable_over_a_fifo_is_refused_without_hanging(fifo_at_the_backup, app):
    app.ok("add", TOTP_URI)
    result = app.run("backup", "--enable", "--to", str(fifo_at_the_backup))
    assert result.returncode == 17
    not_regular = f"{BACKUP_FILE} at {fifo_at_the_backup} is not a backup (not a regular file)"
    assert f"already holds a file this device cannot read as a backup ({not_regular})" in one_line_error(result)
    app.ok("backup", "--enable", "--to", str(fifo_at_the_backup), "--replace")  # replaced by a backup
    assert (fifo_at_the_backup / BACKUP_FILE).is_file()


def test_a_directory_at_the_backup_path_is_no_backup(make_app, tmp_path):
    location = tmp_path / "cloud"
    (location / BACKUP_FILE).mkdir(parents=True)
    result = make_app("fresh").run("restore", "--from", str(location))
    assert result.returncode == 10
    assert one_line_error(result) == f"idp-authenticator: no backup at {location} ({BACKUP_FILE} is not a file)"


def test_a_recovery_secret_differing_from_the_passphrase_only_in_unicode_form_is_refused():
    """Key derivation normalises to NFC: "café" with a combining accent and with U+00E9 give one key."""
    from authenticator.backup.service import check_recovery_secret
    from authenticator.errors import AuthenticatorError

    composed, decomposed = "caf\u00e9 au lait tous les matins", "cafe\u0301 au lait tous les matins"
    with pytest.raises(AuthenticatorError, match="must differ"):
        check_recovery_secret(composed, passphrase=decomposed)
    with pytest.raises(AuthenticatorError, match="must differ"):
        check_recovery_secret(decomposed, passphrase=composed)
    check_recovery_secret(composed, passphrase="another passphrase entirely")
