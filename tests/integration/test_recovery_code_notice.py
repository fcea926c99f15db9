"""A recovery code accepted at the second step: the next page says how many are left, before the
login goes back to the client (not a message left for whatever page of ours comes next, which for
a client that asks no consent was the next sign-in). The last one owes the user a new set, shown at
their next login with their usual method (idp.factors.directory.owe_recovery_codes)."""
from __future__ import annotations

import html
import time

import pyotp
from sqlalchemy import select, update

from fixtures.oidc import FormBrowser
from fixtures.totp import enrol_totp_during_login


def _at_recovery_form(server, rp, seeded) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    browser.submit(next(f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")))
    return browser


def _remaining_shown(page) -> str | None:
    return page.find(r'data-recovery-codes-remaining="(\d+)"')


def test_the_codes_left_are_shown_before_the_client_gets_its_code(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    _secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)

    browser = _at_recovery_form(live_server, rp, seeded)
    page = browser.submit(browser.page.form_with("code"), {"code": codes[0]})
    assert page.status == 200 and browser.last_redirect is None
    assert _remaining_shown(page) == "9" and "9 recovery codes left" in html.unescape(page.text)
    # A reload shows it again (it holds no secret) and moves nothing.
    again = browser.get(page.url)
    assert _remaining_shown(again) == "9" and browser.last_redirect is None
    browser.submit(again.forms()[0])
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    # Nothing is left over for the next page of ours (it used to be a flashed message).
    assert "recovery code accepted" not in browser.get("/").text.lower()


def test_a_form_of_the_notice_posted_twice_gives_one_code(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    _secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    browser = _at_recovery_form(live_server, rp, seeded)
    page = browser.submit(browser.page.form_with("code"), {"code": codes[0]})
    form = page.forms()[0]
    browser.submit(form)
    assert browser.callback_params().get("code")
    browser.submit(form)
    assert browser.last_redirect is None or "code=" not in browser.last_redirect


def test_the_last_code_owes_a_new_set_at_the_next_login_with_the_usual_method(seeded, web, rp_factory, live_server):
    from idp.db import db, utcnow
    from idp.models import Credential, User

    rp = rp_factory(seeded.first_party)
    secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    with live_server.context():  # nine of the ten used already
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        spent = list(db.session.scalars(select(Credential.id).where(
            Credential.user_id == user_id, Credential.factor == "recovery_codes").order_by(Credential.id)))[:9]
        db.session.execute(update(Credential).where(Credential.id.in_(spent)).values(used_at=utcnow()))
        db.session.commit()

    browser = _at_recovery_form(live_server, rp, seeded)
    page = browser.submit(browser.page.form_with("code"), {"code": codes[9]})
    assert _remaining_shown(page) == "0" and "your last recovery code" in page.text
    with live_server.context():
        assert db.session.scalar(select(User.recovery_codes_owed).where(User.id == user_id)) is True
    browser.submit(page.forms()[0])
    rp.exchange(browser.last_redirect)

    # The next login with the authenticator app shows a new set once, then goes on.
    usual = FormBrowser(live_server.url)
    usual.get(rp.authorization_url())
    page = usual.login(seeded.user_email, seeded.password)
    page = usual.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    shown = page.find(r"<pre class=\"codes\" data-recovery-codes>([^<]+)</pre>")
    assert shown and len(html.unescape(shown).split()) == 10, page.text[:2000]
    usual.submit(page.forms()[0])
    assert usual.callback_params().get("code")
    with live_server.context():
        assert db.session.scalar(select(User.recovery_codes_owed).where(User.id == user_id)) is False


def test_the_code_form_posted_again_shows_the_notice_and_spends_nothing(seeded, web, rp_factory, live_server):
    """The code form sent again once its code was accepted (a double click, a second tab): the
    login stands at the notice, which that stale form must neither pass nor end as "expired"."""
    from idp.db import db
    from idp.models import Credential

    rp = rp_factory(seeded.first_party)
    _secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    browser = _at_recovery_form(live_server, rp, seeded)
    form = browser.page.form_with("code")
    browser.submit(form, {"code": codes[0]})
    again = browser.submit(form, {"code": codes[1]})
    assert again.status == 200 and _remaining_shown(again) == "9" and browser.last_redirect is None
    with live_server.context():
        used = db.session.scalars(select(Credential.id).where(Credential.factor == "recovery_codes",
                                                              Credential.used_at.is_not(None))).all()
    assert len(used) == 1
    browser.submit(again.forms()[0])
    assert browser.callback_params().get("code")
