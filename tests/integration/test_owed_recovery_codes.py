"""Recovery codes for a user whose second factor came from outside the login and the security page
(`idp factor totp import`, a phone registered with an operator's activation code): shown once, at
the next sign-in, right after the second factor (idp.factors.directory.owe_recovery_codes)."""
from __future__ import annotations

import html
import time

import pyotp
from sqlalchemy import select, update

from fixtures.oidc import FormBrowser
from fixtures.totp import enrol_totp_during_login

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _import_totp(server, email: str, secret: str = SECRET):
    from click.testing import CliRunner

    from idp.factors.registry import factor_group

    with server.context():
        result = CliRunner().invoke(factor_group(), ["totp", "import", "--user", email, "--secret-stdin"],
                                    input=secret + "\n")
    assert result.exit_code == 0, result.output
    return result.output


def _owed(server, email: str) -> bool:
    from idp.db import db
    from idp.models import User

    with server.context():
        return db.session.scalar(select(User.recovery_codes_owed).where(User.email == email))


def _at_code_page(server, rp, email: str, password: str) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    browser.login(email, password)
    return browser


def _codes_on(page) -> list[str]:
    text = page.find(r"<pre class=\"codes\" data-recovery-codes>([^<]+)</pre>")
    return [code for code in html.unescape(text).split() if code] if text else []


def _code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps_ahead)


def test_an_imported_authenticator_brings_codes_shown_once_at_the_next_sign_in(seeded, rp_factory, live_server):
    from idp.db import db
    from idp.models import AuditEvent

    output = _import_totp(live_server, seeded.user_email)
    assert "will be shown a new set once, at their next sign-in" in output  # (and no code in it)
    assert _owed(live_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    browser = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    page = browser.submit(browser.page.form_with("code"), {"code": _code(SECRET)})
    codes = _codes_on(page)
    assert page.status == 200 and len(codes) == 10, page.text[:2000]
    assert not _owed(live_server, seeded.user_email)
    # Reloading shows the reminder, not the codes (they are stored hashed: nothing to show again).
    reloaded = browser.get(page.url)
    assert _codes_on(reloaded) == [] and "were shown once" in reloaded.text
    browser.submit(reloaded.forms()[0])
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    with live_server.context():  # the set of codes now valid was made with this login: the log says when
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.second_factor")).one()
        assert event.details["factor"] == "totp" and event.details["recovery_codes_issued"] == 10

    # The codes work.
    other = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    [choose] = [f for f in other.page.forms() if f["action"].endswith("/factor/recovery_codes")]
    page = other.submit(choose)
    other.submit(page.form_with("code"), {"code": codes[0]})
    other.past_recovery_notice()
    assert rp.validate_id_token(rp.exchange(other.last_redirect)["id_token"])["amr"] == ["pwd", "otp", "mfa"]

    # Not shown twice: the next login with the authenticator goes straight back to the client.
    again = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    again.submit(again.page.form_with("code"), {"code": _code(SECRET, 1)})
    assert again.last_redirect is not None and again.callback_params().get("code"), again.page.text[:2000]


def test_two_tabs_get_one_set(seeded, rp_factory, live_server):
    """Two logins waiting at the code page when the codes are owed: the first to prove the factor
    is shown the set; the second, whatever it read before, finds it made and shows none."""
    _import_totp(live_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    first = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    second = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    page = first.submit(first.page.form_with("code"), {"code": _code(SECRET)})
    assert len(_codes_on(page)) == 10
    second.submit(second.page.form_with("code"), {"code": _code(SECRET, 1)})
    assert second.last_redirect is not None and second.callback_params().get("code"), second.page.text[:2000]


def test_a_user_who_holds_codes_is_not_shown_new_ones(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    _secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    output = _import_totp(live_server, seeded.user_email)
    assert "recovery codes" not in output and not _owed(live_server, seeded.user_email)
    browser = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    browser.submit(browser.page.form_with("code"), {"code": _code(SECRET)})
    assert browser.last_redirect is not None and browser.callback_params().get("code"), browser.page.text[:2000]


def test_a_mark_left_by_codes_made_elsewhere_shows_none_and_is_cleared(seeded, web, rp_factory, live_server):
    """Owed, then a set made since (say on the security page, by a version that did not clear
    the mark): the login shows no second set, and clears the mark."""
    from idp.db import db
    from idp.models import User

    rp = rp_factory(seeded.first_party)
    secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(recovery_codes_owed=True))
        db.session.commit()
    browser = _at_code_page(live_server, rp, seeded.user_email, seeded.password)
    browser.submit(browser.page.form_with("code"), {"code": _code(secret, 1)})
    assert browser.last_redirect is not None and browser.callback_params().get("code"), browser.page.text[:2000]
    assert not _owed(live_server, seeded.user_email)
