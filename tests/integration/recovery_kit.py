"""Helpers for the recovery tests: push and qr_recovery on the live server, the companion app as a
real subprocess with its own home (an "old phone", a "new phone"), an admin's browser, and the
admin page that issues a recovery QR code."""
from __future__ import annotations

import base64
import html
import json
import os
import subprocess
import sys
from pathlib import Path

import idp.admin.recovery_qr  # noqa: F401 - the admin routes (views.py imports it too, once merged)
from fixtures.oidc import FormBrowser, past_new_recovery_codes

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "phone passphrase for tests"
RECOVERY_SECRET = "backup words kept on paper"


def enable_recovery(server):
    """Register push and qr_recovery on the live server (before its first request)."""
    from idp_plugins.push.factor import PushFactor
    from idp_plugins.qr_recovery.factor import QrRecoveryFactor

    registry = server.app.extensions["idp.factors"]
    for cls in (PushFactor, QrRecoveryFactor):
        if cls.name not in registry:
            registry.register(cls)
    return server


def user_id(server, email: str) -> int:
    from idp.factors import directory

    with server.context():
        return directory.find_user_by_email(email).id


def activation_uri(server, email: str) -> str:
    from idp.db import utcnow
    from idp.factors import directory

    with server.context():
        user = directory.find_user_by_email(email)
        return server.app.extensions["idp.factors"].get("push").issue_activation(user, server.url, utcnow()).uri


def push_devices(server, email: str) -> list:
    from idp.factors import directory

    with server.context():
        user = directory.find_user_by_email(email)
        return server.app.extensions["idp.factors"].get("push").store.list(user)


def audit_events(server, event: str) -> list:
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        return [(e.actor, dict(e.details or {})) for e in
                db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id))]


class Phone:
    """`idp-authenticator` with its own home, run as a subprocess exactly as a user or script would."""

    def __init__(self, home: Path):
        self.home = home

    def env(self) -> dict:
        env = dict(os.environ, PYTHONPATH=str(REPO), IDP_AUTHENTICATOR_PASSPHRASE=PASSPHRASE,
                   IDP_AUTHENTICATOR_RECOVERY_SECRET=RECOVERY_SECRET, IDP_AUTHENTICATOR_SCRYPT_N="16")
        env.pop("IDP_AUTHENTICATOR_NOW", None)
        return env

    def command(self, *args) -> list:
        return [sys.executable, "-m", "authenticator", "--home", str(self.home), *args]

    def run(self, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env(), cwd=REPO,
                              input=stdin if stdin is not None else "", timeout=90)

    def ok(self, *args, **kwargs) -> str:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def accounts(self) -> list:
        return json.loads(self.ok("--json", "list"))

    def files(self) -> dict:
        return {p.relative_to(self.home): p.read_bytes() for p in sorted(self.home.rglob("*")) if p.is_file()}

    def popen(self, *args) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(), cwd=REPO)


def restored_phones(server, email: str, tmp_path: Path) -> tuple[Phone, Phone, str]:
    """An old phone with a push account and automatic backup, and a new phone restored from that
    backup (its push account `needs_verification`). Returns (old, new, the new phone's account id)."""
    old, new = Phone(tmp_path / "old-phone"), Phone(tmp_path / "new-phone")
    old.ok("add", activation_uri(server, email))
    old.ok("backup", "--enable", "--to", str(tmp_path / "cloud"))
    new.ok("restore", "--from", str(tmp_path / "cloud"))
    [account] = new.accounts()
    assert account["type"] == "push" and account["status"] == "needs_verification"
    return old, new, account["id"]


def admin_browser(server, seeded) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get("/account/security")  # signing in to one's own page opens the session the admin pages use
    browser.login(seeded.admin_email, seeded.password)
    page = browser.get("/admin/users")
    assert page.status == 200 and "/admin/users" in page.url, page.text[:1000]
    return browser


def issue_on_admin_page(browser: FormBrowser, target_id: int, valid_for: str = "86400") -> dict:
    """The admin opens the user's recovery QR page and presses "Issue recovery QR code"."""
    page = browser.get(f"/admin/users/{target_id}/recovery-qr")
    assert page.status == 200, page.text[:1000]
    form = page.form_with("expires_in")
    page = browser.submit(form, {"expires_in": valid_for})
    assert page.status == 200, page.text[:2000]
    uri = html.unescape(page.find(r'data-recovery-uri="([^"]+)"'))
    secret = page.find(r'data-recovery-secret="([^"]+)"')
    png = base64.b64decode(page.find(r'href="data:image/png;base64,([A-Za-z0-9+/=]+)"'))
    assert "<svg" in page.text and png.startswith(b"\x89PNG")
    return {"uri": uri, "secret": secret, "png": png, "page": page}


def push_login(server, seeded, rp, phone: Phone):
    """A browser login answered by `phone` (`pending`, then `approve` with the page's number)."""
    web = FormBrowser(server.url)
    page = web.get(rp.authorization_url())
    assert "password" in page.text, (web.last_redirect, page.status, page.text[:500])
    page = web.login(seeded.user_email, seeded.password)
    number = page.find(r'data-push-number="(\d+)"')
    assert number, page.text[:2000]
    [challenge] = json.loads(phone.ok("--json", "pending"))
    # "--": a challenge id may begin with "-" (base64url), which argparse would take for an option.
    assert phone.ok("approve", "--number", number, "--", challenge["id"]).startswith("approved")
    web.submit([f for f in page.forms() if "version" in f["fields"]][0])
    # A phone registered with an activation or recovery code is a second factor set up outside
    # the login: the first login it answers shows the user their recovery codes if they hold none.
    past_new_recovery_codes(web)
    if web.last_redirect is None:
        web.consent("allow")
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert {"swk", "user", "mfa"} <= set(claims["amr"])
    return claims
