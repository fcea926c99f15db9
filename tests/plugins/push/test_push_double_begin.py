"""Two begins of one login's push request at once: a double click on "send a push instead".

Each copy of the form read the login at the same version. The second copy's `begin_challenge`
cancelled the request the first had sent and kept (the login's earlier requests are superseded),
sent its own, then failed to keep it (the version had moved): the login waited on a cancelled
request while the phone listed a live one the login knew nothing of, until the page's poll said
"That request expired. A new one has been started". Now the step is claimed (a version-guarded
update) before anything begins: the copy that loses begins nothing.
"""
from __future__ import annotations

import threading
import time

from sqlalchemy import create_engine, select

from idp.models import FactorChallenge, LoginTransaction

from fixtures.oidc import FormBrowser, past_new_recovery_codes
from fixtures.race import at_once, tabs_of
from test_push_login import _user_with_push_and_totp, continue_


def _login_row(engine):
    with engine.connect() as connection:
        return connection.execute(select(LoginTransaction.id, LoginTransaction.version, LoginTransaction.factor_name,
                                          LoginTransaction.factor_state)).one()


def _live_requests(engine, transaction_id: str) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(FactorChallenge.id).where(
            FactorChallenge.transaction_id == transaction_id, FactorChallenge.factor == "push",
            FactorChallenge.status == "pending")))


def _on_the_code_page(push_server, seeded, rp_factory):
    """A user with a phone and an authenticator app, at the app's code page (the newest factor),
    which offers "Approve on your phone" as another method."""
    device, _secret = _user_with_push_and_totp(push_server, seeded)
    web = FormBrowser(push_server.url)
    web.get(rp_factory(seeded.first_party).authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert "data-push-number" not in page.text and page.form_with("code")
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    return device, web, choose


def test_a_double_click_on_send_a_push_instead_sends_one_request_the_login_waits_on(push_server, seeded,
                                                                                   rp_factory):
    device, web, choose = _on_the_code_page(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, lock, calls = factor.begin_challenge, threading.Lock(), []

    def begin_challenge(user, ctx):
        """The first begin waits until both copies have read the login; a second begin, if any,
        runs once the first one's request is what the login waits on (the order that lost it)."""
        with lock:
            calls.append(ctx.transaction_id)
            mine = len(calls)
        if mine == 1:
            time.sleep(1.0)  # (long enough for the other copy to read the login, on a loaded machine too)
            return original(user, ctx)
        from idp.factors import directory

        directory.rollback()  # (SQLite: hold no write lock while the first copy keeps its request)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _login_row(engine).factor_name != "push":
            time.sleep(0.02)
        return original(user, ctx)

    factor.begin_challenge = begin_challenge
    try:
        tabs = tabs_of(web, 2)
        pages = at_once(2, lambda i: tabs[i].submit(choose))
    finally:
        del factor.begin_challenge
    assert all("data-push-number" in page.text for page in pages)
    login = _login_row(engine)
    waited_on = (login.factor_state or {}).get("state", {}).get("challenge_id")
    assert login.factor_name == "push" and waited_on
    assert _live_requests(engine, login.id) == [waited_on], "the login waits on a request that is not live"
    [listed] = device.pending()
    assert listed["id"] == waited_on
    assert len(calls) == 1, f"{len(calls)} requests begun for one login"
    # Both tabs show the number of that request; approved on the phone, the login goes on.
    numbers = {page.find(r'data-push-number="(\d+)"') for page in pages}
    assert len(numbers) == 1
    assert device.answer(waited_on, "approve", numbers.pop()) == {"status": "approved"}
    continue_(web, pages[0])
    past_new_recovery_codes(web)
    if web.last_redirect is None:
        web.consent("allow")
    assert "code=" in web.last_redirect
    engine.dispose()


def test_a_phone_asking_as_the_request_is_sent_lists_it_at_once(push_server, seeded, rp_factory):
    """The request is committed and the phones woken inside `begin_challenge`; the login keeps it a
    moment later. A phone's long-poll that began in between found the login still waiting on the
    app's code, listed nothing and slept until its fallback interval (3 s with Redis). The login's
    claim of the step commits with the request: from then on, it waits on no other method."""
    device, web, choose = _on_the_code_page(push_server, seeded, rp_factory)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, seen = factor.begin_challenge, []
    # A missed request would be found only at the next database check: put that an hour away, past
    # the poll's 20 s (long_poll_max_wait), so that a poll that slept to its end tells itself apart
    # from one answered at once by a margin no slow machine comes near (no race on a few seconds).
    with push_server.app.app_context():
        waker = factor.waker()
    fallback, waker.fallback_interval = waker.fallback_interval, 3600.0

    def begin_challenge(user, ctx):
        step = original(user, ctx)
        started = time.monotonic()
        seen.append(([c["id"] for c in device.pending(wait=20)], time.monotonic() - started))
        return step

    factor.begin_challenge = begin_challenge
    try:
        page = web.submit(choose)
    finally:
        del factor.begin_challenge
        waker.fallback_interval = fallback
    [(listed, took)] = seen
    engine = create_engine(push_server.database_url)
    waited_on = _login_row(engine).factor_state["state"]["challenge_id"]
    engine.dispose()
    assert listed == [waited_on] and took < 15  # not slept to the poll's end (20 s)
    assert page.find(r'data-push-number="(\d+)"')


def test_a_second_click_read_after_the_first_claimed_the_step_begins_nothing(push_server, seeded, rp_factory,
                                                                           monkeypatch):
    """The other order of a double click: the second copy reads the login after the first claimed
    its step (a version later) and before it kept its request. Claiming in turn, it began a request
    of its own, which the first one's, sent after, cancelled: the login waited on a cancelled
    request again. It now begins nothing and shows the first one's."""
    from idp.login.steps import second_factor

    device, web, choose = _on_the_code_page(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, calls, claim_seen = factor.begin_challenge, [], threading.Event()
    seen_by_the_second = second_factor.being_begun

    def being_begun(row):
        found = seen_by_the_second(row)
        if found:
            claim_seen.set()
        return found

    def begin_challenge(user, ctx):
        calls.append(ctx.transaction_id)
        if len(calls) == 1:
            from idp.factors import directory

            directory.rollback()  # (SQLite: no write lock held while the second copy comes)
            claim_seen.wait(5)  # until the second copy has read the login claimed, not yet kept
        return original(user, ctx)

    monkeypatch.setattr(second_factor, "being_begun", being_begun)
    factor.begin_challenge = begin_challenge
    tabs = tabs_of(web, 2)
    first = {}
    try:
        clicking = threading.Thread(target=lambda: first.update(page=tabs[0].submit(choose)))
        clicking.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _login_row(engine).factor_name != "push":
            time.sleep(0.01)
        second = tabs[1].submit(choose)
        clicking.join(10)
    finally:
        del factor.begin_challenge
    login = _login_row(engine)
    waited_on = login.factor_state["state"]["challenge_id"]
    assert _live_requests(engine, login.id) == [waited_on], "the login waits on a request that is not live"
    assert len(calls) == 1, f"{len(calls)} requests begun for one login"
    numbers = {page.find(r'data-push-number="(\d+)"') for page in (first["page"], second)}
    assert len(numbers) == 1 and None not in numbers
    engine.dispose()


def _claim_left_behind(engine) -> None:
    """The login as a worker that died between its claim and its keep leaves it (killed at its
    timeout, the machine restarted): push named, no step kept, the version moved."""
    from sqlalchemy import update

    with engine.begin() as connection:
        connection.execute(update(LoginTransaction).values(factor_name="push", factor_state=None,
                                                           version=LoginTransaction.version + 1))


def test_a_claim_left_behind_by_a_dead_worker_holds_the_login_only_a_moment(push_server, seeded, rp_factory):
    """Nothing keeps it for ever: the poll says pending meanwhile, and the user's click on "send a
    push instead" again, once the wait for the dead request's keep is over, sends the push asked
    for (it was ignored: the page then began the method used last, the app's code, and the user
    had to ask a third time); the login goes on with it."""
    device, web, choose = _on_the_code_page(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    _claim_left_behind(engine)
    login_id = _login_row(engine).id
    page = web.submit(choose)
    number = page.find(r'data-push-number="(\d+)"')
    assert number, page.text[:2000]
    login = _login_row(engine)
    waited_on = login.factor_state["state"]["challenge_id"]
    assert _live_requests(engine, login_id) == [waited_on]
    assert device.answer(waited_on, "approve", number) == {"status": "approved"}
    continue_(web, page)
    past_new_recovery_codes(web)
    if web.last_redirect is None:
        web.consent("allow")
    assert "code=" in web.last_redirect
    engine.dispose()


def test_a_page_loaded_on_a_claim_left_behind_begins_a_method_after_the_wait(push_server, seeded, rp_factory):
    device, web, _choose = _on_the_code_page(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    _claim_left_behind(engine)
    page = web.get(web.page.url)
    assert page.status == 200 and (page.form_with("code") or page.find(r'data-push-number="(\d+)"'))
    assert _login_row(engine).factor_state  # kept: the next load shows it at once


def test_a_waiting_page_whose_step_a_dead_worker_claimed_is_told_to_load_again(push_server, seeded, rp_factory):
    """The page waits on a push request; another request of the login (a second tab's "send a push
    instead") claimed the step and its worker died before keeping its request. The page's poll said
    "pending" for ever: only a reload (which waits for the keep a moment, then begins a method) got
    the user out. The poll now waits that moment too, then clears the claim and says "restart":
    the page's script posts its form, as on any answer, and the page that follows begins a method."""
    device, web, choose = _on_the_code_page(push_server, seeded, rp_factory)
    page = web.submit(choose)
    assert page.find(r'data-push-number="(\d+)"'), page.text[:2000]
    poll = page.find(r'data-poll-url="([^"]+)"')
    poll_url = web.base_url + poll if poll.startswith("/") else poll
    poll_url += ("&" if "?" in poll_url else "?") + "wait=20"  # (as push.js adds it)
    engine = create_engine(push_server.database_url)
    _claim_left_behind(engine)
    answers = []
    for _ in range(3):  # (the script asks again after each "pending")
        answers.append(web.http.get(poll_url).json()["status"])
        if answers[-1] != "pending":
            break
    assert answers[-1] == "restart", answers
    login = _login_row(engine)
    assert (login.factor_name, login.factor_state) == (None, None), "the dead claim is left for the next load"
    # What push.js does on an answer: post the page's form. The page that follows shows a method.
    after = continue_(web, page)
    assert after.status == 200 and (after.form_with("code") or after.find(r'data-push-number="(\d+)"')), \
        after.text[:2000]
    if not after.find(r'data-push-number="(\d+)"'):
        [choose] = [f for f in after.forms() if f["action"].endswith("/factor/push")]
        after = web.submit(choose)
    number = after.find(r'data-push-number="(\d+)"')
    waited_on = _login_row(engine).factor_state["state"]["challenge_id"]
    assert device.answer(waited_on, "approve", number) == {"status": "approved"}
    continue_(web, after)
    past_new_recovery_codes(web)
    if web.last_redirect is None:
        web.consent("allow")
    assert "code=" in web.last_redirect
    engine.dispose()


def test_a_plain_poll_on_a_claim_being_kept_says_pending(push_server, seeded, rp_factory):
    """Without `wait` (a status asked in passing) the poll waits for nothing: pending, the claim kept."""
    device, web, choose = _on_the_code_page(push_server, seeded, rp_factory)
    page = web.submit(choose)
    poll = page.find(r'data-poll-url="([^"]+)"')
    engine = create_engine(push_server.database_url)
    _claim_left_behind(engine)
    assert web.http.get(web.base_url + poll if poll.startswith("/") else poll).json() == {"status": "pending"}
    assert _login_row(engine).factor_name == "push"
    engine.dispose()


# ---------------------------------------------------------------- the security page's "Add"

def _activations(engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(FactorChallenge.id).where(
            FactorChallenge.factor == "push", FactorChallenge.status == "pending",
            FactorChallenge.lookup_key.like("push-activation:%"))))


def _add_push_form(push_server, seeded) -> tuple[FormBrowser, dict]:
    web = FormBrowser(push_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    return web, [f for f in page.forms() if f["action"].endswith("/add/push")][0]


def _issued(push_server) -> int:
    from test_push_login import push_events

    return len(push_events(push_server, "push.activation_issued"))


def test_a_double_click_on_add_push_shows_one_activation_code(push_server, seeded):
    """The browser drops the first answer of a double click and shows the second's: each began an
    enrolment, so two activation codes were issued (and audited), the first one live but shown
    nowhere. The second copy now finds the enrolment the first began from this session a moment
    ago and shows it."""
    web, add = _add_push_form(push_server, seeded)
    engine = create_engine(push_server.database_url)
    first = web.http.post(add["action"], data=add["fields"], allow_redirects=False)
    again = web.http.post(add["action"], data=add["fields"], allow_redirects=False)
    assert (first.status_code, again.status_code) == (302, 302)
    assert again.headers["Location"] == first.headers["Location"]
    page = web.get(again.headers["Location"])
    assert page.status == 200 and page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert len(_activations(engine)) == 1 and _issued(push_server) == 1
    # Another browser of the same user (its own session) begins its own.
    other, add_there = _add_push_form(push_server, seeded)
    elsewhere = other.http.post(add_there["action"], data=add_there["fields"], allow_redirects=False)
    assert elsewhere.status_code == 302 and elsewhere.headers["Location"] != first.headers["Location"]
    assert len(_activations(engine)) == 2 and _issued(push_server) == 2
    engine.dispose()


def test_two_copies_of_add_push_at_once_show_one_activation_code(push_server, seeded):
    """The copies at the same moment: the second reads while the first is still beginning (its
    activation being issued). It waits for that enrolment, then shows it."""
    web, add = _add_push_form(push_server, seeded)
    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, calls = factor.begin_enrolment, []

    def begin_enrolment(user, ctx):
        calls.append(1)
        time.sleep(0.5)  # (the other copy arrives meanwhile)
        return original(user, ctx)

    factor.begin_enrolment = begin_enrolment
    try:
        tabs = tabs_of(web, 2)
        answers = at_once(2, lambda i: tabs[i].http.post(add["action"], data=add["fields"], allow_redirects=False))
    finally:
        del factor.begin_enrolment
    assert [a.status_code for a in answers] == [302, 302]
    assert answers[0].headers["Location"] == answers[1].headers["Location"]
    assert len(calls) == 1 and len(_activations(engine)) == 1 and _issued(push_server) == 1
    assert web.get(answers[0].headers["Location"]).find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    engine.dispose()


# ---------------------------------------------------------------- the login's enrolment step

def _at_the_enrolment_choice(push_server, seeded, rp_factory) -> tuple[FormBrowser, dict]:
    """A user with no second factor, asked for one: the login's enrolment step, its choice of
    methods, and the form that chooses push."""
    web = FormBrowser(push_server.url)
    web.get(rp_factory(seeded.first_party).authorization_url(acr_values="urn:idp:acr:mfa"))
    page = web.login(seeded.user_email, seeded.password)
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    return web, choose


def test_a_double_click_on_push_at_the_logins_enrolment_shows_one_activation_code(push_server, seeded,
                                                                                   rp_factory):
    """The second copy of the click arrives once the first has begun the enrolment: it began
    another, a second activation code issued (and audited), the first one live but shown nowhere.
    The method just begun, chosen again at once, is the one shown."""
    web, choose = _at_the_enrolment_choice(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    first = web.http.post(choose["action"], data=choose["fields"], allow_redirects=False)
    again = web.http.post(choose["action"], data=choose["fields"], allow_redirects=False)
    assert (first.status_code, again.status_code) == (302, 302)
    page = web.get(again.headers["Location"])
    assert page.status == 200 and page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert len(_activations(engine)) == 1 and _issued(push_server) == 1
    engine.dispose()


def test_two_copies_of_push_at_the_logins_enrolment_at_once_show_one_activation_code(push_server, seeded,
                                                                                   rp_factory):
    """The copies at the same moment, both reading the login before either began: the step is
    claimed first, and the copy that loses begins nothing and shows what the other keeps."""
    web, choose = _at_the_enrolment_choice(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, calls = factor.begin_enrolment, []

    def begin_enrolment(user, ctx):
        calls.append(1)
        from idp.factors import directory

        directory.rollback()  # (SQLite: no write lock held while the other copy comes)
        time.sleep(0.5)  # (the other copy arrives meanwhile)
        return original(user, ctx)

    factor.begin_enrolment = begin_enrolment
    try:
        tabs = tabs_of(web, 2)
        pages = at_once(2, lambda i: tabs[i].submit(choose))
    finally:
        del factor.begin_enrolment
    uris = {page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>") for page in pages}
    assert len(uris) == 1 and None not in uris, [page.text[:1000] for page in pages]
    assert len(calls) == 1 and len(_activations(engine)) == 1 and _issued(push_server) == 1
    engine.dispose()


def test_a_claim_left_behind_at_the_logins_enrolment_is_cleared(push_server, seeded, rp_factory):
    """A worker that died between its claim of the enrolment step and its keep: the choice of
    methods, loaded after the wait for that keep, clears it (every later load waited again), and
    push chosen then shows its activation code."""
    web, choose = _at_the_enrolment_choice(push_server, seeded, rp_factory)
    engine = create_engine(push_server.database_url)
    _claim_left_behind(engine)
    page = web.get(web.page.url)
    assert page.status == 200 and any(f["action"].endswith("/factor/push") for f in page.forms())
    login = _login_row(engine)
    assert (login.factor_name, login.factor_state) == (None, None)
    page = web.submit(choose)
    assert page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert len(_activations(engine)) == 1 and _issued(push_server) == 1
    engine.dispose()


def test_an_add_left_half_begun_by_a_dead_worker_holds_a_later_add_only_a_moment(push_server, seeded):
    """A worker that died between the security page's claim of an enrolment and its keep (killed
    at its timeout): the claim stays pending, from this session, with nothing kept. The next "Add"
    of the same method, a second later, waits for that keep (a few seconds at most), then begins
    its own: shown, one activation issued, and the claim never shown to anyone."""
    from datetime import timedelta

    from idp.db import utcnow
    from idp.factors.challenges import ACCOUNT_ENROLMENT
    from idp.models import UserSession

    web, add = _add_push_form(push_server, seeded)
    engine = create_engine(push_server.database_url)
    with engine.begin() as connection:
        sid, user_id = connection.execute(select(UserSession.sid, UserSession.user_id)).one()
        stamp = utcnow()
        connection.execute(FactorChallenge.__table__.insert().values(
            id="ab" * 32, factor=ACCOUNT_ENROLMENT, user_id=user_id, status="pending",
            payload_json={"factor": "push", "session": sid}, created_at=stamp,
            expires_at=stamp + timedelta(minutes=10)))
    answer = web.http.post(add["action"], data=add["fields"], allow_redirects=False)
    assert answer.status_code == 302 and "ab" * 32 not in answer.headers["Location"]
    page = web.get(answer.headers["Location"])
    assert page.status == 200 and page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert len(_activations(engine)) == 1 and _issued(push_server) == 1
    # The claim's own page (its id guessed or kept from a log) shows nothing of it.
    claim_page = web.http.get(push_server.url + "/account/security/enrol/" + "ab" * 32, allow_redirects=False)
    assert claim_page.status_code != 200 and "data-activation-uri" not in claim_page.text
    engine.dispose()
