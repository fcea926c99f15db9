"""The encrypted local store: round trip, wrong passphrase, damage, file modes."""

import json
import stat

import pytest

from authenticator.accounts import PUSH, TOTP, Account, PushData, TotpParams, ensure_can_approve, find_account
from authenticator.errors import AuthenticatorError, StoreDamaged, WrongPassphrase
from authenticator.store import DATA_FILE, HEADER_FILE, Vault
from authenticator_testkit import PASSPHRASE


def totp_account(name="alice", issuer="ACME"):
    return Account(id="", type=TOTP, issuer=issuer, name=name, totp=TotpParams(secret="JBSWY3DPEHPK3PXP"))


def test_round_trip(tmp_path):
    vault = Vault.create(tmp_path / "home", PASSPHRASE)
    stored = vault.add(totp_account())
    vault.save()
    reopened = Vault.open(tmp_path / "home", PASSPHRASE)
    assert reopened.accounts == [stored]


def test_nothing_is_written_until_save(tmp_path):
    Vault.create(tmp_path / "home", PASSPHRASE).add(totp_account())
    assert not Vault.exists(tmp_path / "home")


def test_files_are_private_and_secrets_are_not_in_clear(tmp_path):
    home = tmp_path / "home"
    vault = Vault.create(home, PASSPHRASE)
    vault.add(totp_account())
    vault.save()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in (HEADER_FILE, DATA_FILE):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    assert b"JBSWY3DP" not in (home / DATA_FILE).read_bytes()
    assert not [p for p in home.iterdir() if p.name.endswith(".tmp")]


def test_header_records_the_scrypt_cost_used(tmp_path):
    vault = Vault.create(tmp_path / "home", PASSPHRASE)
    vault.save()
    header = json.loads((tmp_path / "home" / HEADER_FILE).read_text())
    assert header["kdf"] == {"name": "scrypt", "n": 16, "r": 8, "p": 3}
    assert header["version"] == 1


def test_default_scrypt_cost(monkeypatch, tmp_path):
    monkeypatch.delenv("IDP_AUTHENTICATOR_SCRYPT_N")
    Vault.create(tmp_path / "home", PASSPHRASE).save()
    header = json.loads((tmp_path / "home" / HEADER_FILE).read_text())
    assert (header["kdf"]["n"], header["kdf"]["r"], header["kdf"]["p"]) == (2**15, 8, 3)  # OWASP's row for 2**15


def test_a_store_made_with_the_former_cost_still_opens(tmp_path, monkeypatch):
    """Stores made before p = 3 (p = 1): the parameters travel with the salt."""
    from authenticator import crypto

    home = tmp_path / "home"
    with monkeypatch.context() as former:
        former.setattr(crypto.KdfParams, "for_new_file", classmethod(lambda cls: cls(n=16, p=1)))
        Vault.create(home, PASSPHRASE).save()
    assert json.loads((home / HEADER_FILE).read_text())["kdf"]["p"] == 1
    assert Vault.open(home, PASSPHRASE) is not None


def test_wrong_passphrase_is_named(tmp_path):
    Vault.create(tmp_path / "home", PASSPHRASE).save()
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        Vault.open(tmp_path / "home", "not it")


def test_altered_data_is_detected(tmp_path):
    home = tmp_path / "home"
    Vault.create(home, PASSPHRASE).save()
    data = bytearray((home / DATA_FILE).read_bytes())
    data[-1] ^= 1
    (home / DATA_FILE).write_bytes(bytes(data))
    with pytest.raises(StoreDamaged, match="damaged or was altered"):
        Vault.open(home, PASSPHRASE)


def test_header_from_another_store_is_detected(tmp_path):
    for name in ("a", "b"):
        Vault.create(tmp_path / name, PASSPHRASE).save()
    (tmp_path / "a" / HEADER_FILE).write_bytes((tmp_path / "b" / HEADER_FILE).read_bytes())
    with pytest.raises(StoreDamaged):
        Vault.open(tmp_path / "a", PASSPHRASE)


def test_duplicate_account_refused(tmp_path):
    vault = Vault.create(tmp_path / "home", PASSPHRASE)
    vault.add(totp_account())
    with pytest.raises(AuthenticatorError, match="already exists"):
        vault.add(totp_account())


def test_find_by_id_label_or_unique_name():
    a = totp_account("alice").with_id("id-a")
    b = totp_account("alice", issuer="Other").with_id("id-b")
    c = totp_account("carol").with_id("id-c")
    accounts = [a, b, c]
    assert find_account(accounts, "id-b") is b
    assert find_account(accounts, "Other:alice") is b
    assert find_account(accounts, "carol") is c
    with pytest.raises(AuthenticatorError, match="several accounts"):
        find_account(accounts, "alice")
    with pytest.raises(AuthenticatorError, match="no account matches"):
        find_account(accounts, "zed")


def test_restored_push_account_cannot_approve():
    restored = Account(id="p", type=PUSH, issuer="ACME", name="alice",
                       push=PushData(issuer_url="https://idp.example", username="alice", status="needs_verification"))
    with pytest.raises(AuthenticatorError, match="needs verification"):
        ensure_can_approve(restored)


def test_a_first_save_that_fails_leaves_no_header(tmp_path, monkeypatch):
    """A full disk on the first `add`: the header alone would fix the passphrase of a store that holds
    nothing, and the next `add` with another passphrase would say "wrong passphrase"."""
    from authenticator import store

    home = tmp_path / "home"
    real_write = store.write_atomically

    def disk_full_for_data(path, data, *args, **kwargs):
        if path.name == DATA_FILE:
            raise OSError(28, "No space left on device")
        return real_write(path, data, *args, **kwargs)

    monkeypatch.setattr(store, "write_atomically", disk_full_for_data)
    vault = Vault.create(home, "the first passphrase")
    vault.add(totp_account())
    with pytest.raises(OSError):
        vault.save()
    assert not (home / HEADER_FILE).exists() and not Vault.exists(home)

    monkeypatch.setattr(store, "write_atomically", real_write)
    vault = Vault.create(home, PASSPHRASE)
    vault.add(totp_account())
    vault.save()
    assert [a.name for a in Vault.open(home, PASSPHRASE).accounts] == ["alice"]


def test_a_header_left_alone_by_a_crash_is_no_store(app):
    """Killed between the header and the first data write: the next first save replaces it."""
    from authenticator_testkit import TOTP_URI

    Vault.create(app.home, "the first passphrase").save()
    (app.home / DATA_FILE).unlink()
    assert not Vault.exists(app.home)
    assert "no accounts" in app.ok("list")
    app.ok("add", TOTP_URI)  # with PASSPHRASE, not "the first passphrase"
    assert len(Vault.open(app.home, PASSPHRASE).accounts) == 1


def test_an_existing_home_open_to_others_is_made_0700_with_a_warning(make_app):
    """mkdir(mode=0o700, exist_ok=True) leaves a directory that was there alone: a 0777 home let anyone
    put an older store.bin back."""
    from authenticator_testkit import TOTP_URI

    app = make_app("shared")
    app.home.mkdir()
    app.home.chmod(0o777)
    result = app.run("add", TOTP_URI)
    assert result.returncode == 0
    assert result.stderr == (f"idp-authenticator: warning: home directory {app.home} was open to other users "
                             "(mode 0777); it is 0700 now\n")
    assert stat.S_IMODE(app.home.stat().st_mode) == 0o700
    assert app.run("add", "otpauth://totp/Bank:bob?secret=JBSWY3DPEHPK3PXP").stderr == ""  # said once


def test_a_home_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    import os

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: home.stat().st_uid + 1)
    vault = Vault.create(home, PASSPHRASE)
    vault.add(totp_account())
    with pytest.raises(AuthenticatorError, match="belongs to another user"):
        vault.save()
    assert list(home.iterdir()) == []


def test_a_header_whose_cost_was_lowered_is_damage_not_a_wrong_passphrase(tmp_path):
    """Lowered scrypt parameters are refused before a key is derived with them: "damaged", never
    "wrong passphrase" (which would have the user try others)."""
    home = tmp_path / "home"
    Vault.create(home, PASSPHRASE).save()
    header = json.loads((home / HEADER_FILE).read_text())
    header["kdf"]["n"] = 8  # written with the test cost, 16
    (home / HEADER_FILE).write_text(json.dumps(header))
    with pytest.raises(StoreDamaged, match="weaker than"):
        Vault.open(home, PASSPHRASE)
