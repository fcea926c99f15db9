"""Security notices: the user is told by e-mail when their password or sign-in methods change.

An account taken over shows itself this way: whoever changed the password or added their own
authenticator app did it without the owner, and the owner's mailbox hears of it. Sent for
these committed audit events (idp.audit.on_commit), to the verified address of the user the
event is about, in their language:

    user.password_changed        password_changed          (any door: self, admin, cli, reset link)
    factor.enrolled              factor_added              (the factor's name; not when "announced")
    factor.removed, .revoked     factor_removed            (the factor's name; revoked: by an admin)
    factor.reset                 factors_reset             (every second factor, by an admin)
    recovery_codes.regenerated   recovery_codes_regenerated
    push.device_registered       new_device                (the device's name: by a code, a recovery QR
                                                            code or the password and an e-mailed code)
    login.recovery_used          recovery_used             (the recovery method's name: a recovery code,
                                                            an admin's recovery QR code)
    recovery_qr.issued           recovery_qr_issued        (by an admin or `idp recovery-qr issue`)
    webauthn.clone_suspected     key_suspended             (a security key's count went backwards: the
                                                            key's label, in the user's language; its
                                                            browsers were signed out)

A credential that stored itself before the enrolment page's last step (a push device, which the
phone registers) was announced when it did ("A new device was added to your account"): the
`factor.enrolled` that the page records after it says `announced` (idp.factors.enrolment) and
sends nothing more.

The mail leaves on a thread of its own once the change is committed, like a password reset
link (idp.password_reset.request_in_background), so the answer does not wait for the relay, and
a change rolled back sends nothing. A delivery that fails is logged, nothing more: the change
stands, and the notice is a courtesy, not a step of it. `mail.security_notices = false` turns
the notices off.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask, current_app

from idp import audit

log = logging.getLogger(__name__)
_ENABLED = "idp.security_notices"

# audit event -> the notice's purpose (idp.notify.base: its subject and text)
PURPOSES = {
    "user.password_changed": "password_changed",
    "factor.enrolled": "factor_added",
    "factor.totp.imported": "factor_added",  # (`idp factor totp import`: a method the user did not add)
    "factor.removed": "factor_removed",
    "factor.revoked": "factor_removed",
    "factor.reset": "factors_reset",
    "recovery_codes.regenerated": "recovery_codes_regenerated",
    "push.device_registered": "new_device",
    "login.recovery_used": "recovery_used",
    "recovery_qr.issued": "recovery_qr_issued",
    "webauthn.clone_suspected": "key_suspended",
}


@dataclass(frozen=True)
class Notice:
    user_id: int
    purpose: str
    factor: str | None  # the factor's name, for the notices about one
    device: str | None = None  # a new device's name, as the user gave it (new_device)
    locale: str | None = None  # the language of the page where the user acted (see above)
    credential_id: int | None = None  # the credential a notice names by its label (key_suspended)


def init_app(app: Flask, settings) -> None:
    app.extensions[_ENABLED] = bool(settings.get("mail.security_notices", True))
    audit.on_commit(_committed)


def _committed(events: list[dict]) -> None:
    if not current_app.extensions.get(_ENABLED):
        return
    notices = [Notice(event["subject_id"], PURPOSES[event["event"]], (event["details"] or {}).get("factor"),
                      (event["details"] or {}).get("device_name"), _page_locale(event), _named_credential(event))
               for event in events if event["event"] in PURPOSES and event["subject_id"] is not None
               and not (event["details"] or {}).get("announced")]
    if notices:
        send_in_background(current_app._get_current_object(), notices)


def _named_credential(event: dict) -> int | None:
    """The credential a notice names by its label (as the user reads it: a label the factor
    gave it is translated), rather than by its factor's name: a suspended security key."""
    return (event["details"] or {}).get("credential_id") if event["event"] == "webauthn.clone_suspected" else None


def _page_locale(event: dict) -> str | None:
    """The language of the request that made the change, when the user made it (or whoever holds
    their browser: a reset link's anonymous actor); None for an admin's request or outside one."""
    if event["actor_id"] not in (None, event["subject_id"]):
        return None
    from idp.extensions import request_locale

    return request_locale()


SHOWN_NAME = 40  # characters of a device's self-chosen name a notice repeats


def _quoted_name(name: str | None) -> str | None:
    """A new device's name as its notice repeats it (within quotes, "whoever added it named it"):
    at most SHOWN_NAME characters, and without the quotes that would close it early."""
    if not name:
        return None
    name = name.replace("“", "'").replace("”", "'").replace("«", "'").replace("»", "'").strip()
    return name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME - 1].rstrip() + "…"


def send_in_background(app: Flask, notices: list[Notice]) -> threading.Thread:
    """Mail `notices` on a thread of its own, started now. Not a daemon: a worker (or an `idp`
    command) that exits gracefully sends what it promised first (the SMTP notifier gives up
    after its timeout)."""
    from idp.ops import logs

    thread = threading.Thread(target=logs.with_request_id(deliver), args=(app, notices), name="security-notices")
    thread.start()
    return thread


def deliver(app: Flask, notices: list[Notice]) -> None:
    """Send each notice, outside any request; nothing here may raise."""
    from idp.db import db
    from idp.notify import NotifyError, current_notifier

    with app.app_context():
        try:
            for notice, to, what, locale in _letters(notices):
                try:
                    current_notifier().send_code(to, what, notice.purpose, locale)
                except NotifyError as exc:
                    log.warning("security notice %s to user %s not sent: %s", notice.purpose, notice.user_id,
                                str(exc)[:200])
        except Exception:
            log.exception("security notices could not be sent")
        finally:
            db.session.remove()


def _letters(notices: list[Notice]) -> list[tuple[Notice, str, str, str]]:
    """(notice, address, what it names, language) of each notice whose user can hear of it.

    Read in one transaction, ended before the relay is spoken to: on SQLite every transaction
    holds the database's write lock (idp.db), and a slow relay (SmtpNotifier waits up to its
    timeout, 10 s) kept every other request of every worker waiting for it meanwhile."""
    from flask_babel import force_locale

    from idp.db import db
    from idp.factors.registry import current_registry
    from idp.models import User

    letters = []
    try:
        for notice in notices:
            user = db.session.get(User, notice.user_id)
            if user is None or not user.email or not user.email_verified or user.disabled:
                continue
            locale = user.locale or notice.locale or "en"
            registry = current_registry()
            credential = (registry.store.get(user.id, notice.credential_id, include_revoked=True)
                          if notice.credential_id is not None else None)
            with force_locale(locale):
                what = (_quoted_name(notice.device) or (registry.credential_label(credential) if credential else "")
                        or (str(registry.label_of(notice.factor)) if notice.factor else ""))
            letters.append((notice, user.email, what, locale))
    finally:
        db.session.rollback()  # (it only read)
    return letters
