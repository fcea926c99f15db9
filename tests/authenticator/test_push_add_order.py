"""`add` with a push activation URI: the local store is unlocked before anything reaches the server.

A wrong passphrase (or an account already on this device) must stop `add` before the registration:
otherwise the server keeps a device whose private key this device never stored, and the one-time
activation code is spent. And if the store cannot be saved after the registration, the error says
which server-side device needs revoking.
"""
from __future__ import annotations

import json

import pytest

from authenticator_testkit import TOTP_URI, one_line_error
from test_push_app import LiveIdp

WRONG = {"IDP_AUTHENTICATOR_PASSPHRASE": "not the passphrase of this store"}


@pytest.fixture
def live_idp(tmp_path):
    server = LiveIdp(tmp_path)
    yield server
    server.close()


def devices(live_idp):
    with live_idp.app.app_context():
        return live_idp.factor.store.list(live_idp.user)


def test_wrong_passphrase_registers_nothing(app, live_idp):
    app.ok("add", TOTP_URI)  # the store exists, with the right passphrase
    uri = live_idp.activation_uri()
    before = app.files()

    result = app.run("add", uri, env=WRONG)
    assert result.returncode == 3, result.stderr
    assert "wrong passphrase" in one_line_error(result)
    assert devices(live_idp) == []  # no registration request reached the server
    assert app.files() == before

    # The activation code was not spent: the right passphrase completes the same activation.
    app.ok("add", uri)
    assert len(devices(live_idp)) == 1
    assert sorted(a["type"] for a in json.loads(app.ok("--json", "list"))) == ["push", "totp"]


def test_account_already_here_registers_nothing(app, live_idp):
    app.ok("add", live_idp.activation_uri())
    [device] = devices(live_idp)

    result = app.run("add", live_idp.activation_uri())
    assert "already exists" in one_line_error(result)
    assert [d.id for d in devices(live_idp)] == [device.id]


def test_save_failing_after_registration_names_the_device(app, live_idp, monkeypatch, capsys):
    """In-process (the failure is injected): the store's write fails once the device is registered."""
    from authenticator import cli
    from authenticator.store import Vault

    def disk_full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Vault, "save", disk_full)
    status = cli.main(["--home", str(app.home), "add", live_idp.activation_uri()])
    # (The lowered scrypt cost's warning comes once per process: here only when no in-process test
    # of this worker ran before this one.)
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("idp-authenticator: warning: IDP_AUTHENTICATOR_SCRYPT_N=")]

    assert status == 25
    assert len(err) == 1, err
    [device] = devices(live_idp)  # registered on the server ...
    assert f"device id {device.lookup_key}" in err[0], err  # the credential's lookup key is the device id
    assert "No space left on device" in err[0] and "revoked" in err[0], err
    assert not any(app.home.glob("store*"))  # ... and not kept here
