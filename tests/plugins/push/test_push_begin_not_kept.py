"""A begin whose step the login could not keep: slower than another request's wait for it
(factor_step.BEGUN_ELSEWHERE_WAIT), the login moved on meanwhile (a poll or a page load cleared the
claim it took for a dead one, another tab began a method of its own), and the version-guarded
save of the begun step (`remember_step`) matched nothing. That failure was ignored: the push request
sent, or the activation code issued, stayed live but attached to no step of the login (a phone
still listed the request, a code still registered a phone), and the page showed "no method
could begin". Now what that begin created is expired, and the page shows what the login holds.
Here the login is moved on between the plugin's begin and the save (a separate connection)."""
from __future__ import annotations

import html

import pytest
from sqlalchemy import create_engine, select, update

from idp.models import FactorChallenge, LoginTransaction

from push_testkit import give_device
from test_push_login import push_events, start


def _moved_on_meanwhile(engine, transaction_id: str) -> None:
    """What a request that waited too long for this begin's keep does: the claim cleared as one left
    by a dead worker (`put_back_step`), the version moved."""
    with engine.begin() as connection:
        connection.execute(update(LoginTransaction).where(LoginTransaction.id == transaction_id)
                           .values(factor_name=None, factor_state=None, version=LoginTransaction.version + 1))


def _status(engine, challenge_id: str) -> str:
    with engine.connect() as connection:
        return connection.scalar(select(FactorChallenge.status).where(FactorChallenge.id == challenge_id))


def _number(engine, challenge_id: str) -> str:
    with engine.connect() as connection:
        return connection.scalar(select(FactorChallenge.payload_json).where(FactorChallenge.id == challenge_id))["number"]


def _waited_on(engine) -> dict:
    with engine.connect() as connection:
        return connection.scalar(select(LoginTransaction.factor_state)) or {}


def test_a_push_request_its_login_could_not_keep_is_closed_and_the_page_shows_the_login_s(push_server, seeded,
                                                                                        web, rp_factory):
    device = give_device(push_server, seeded.user_email)
    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, begun = factor.begin_challenge, []

    def begin_challenge(user, ctx):
        step = original(user, ctx)
        begun.append(step.state["challenge_id"])
        if len(begun) == 1:
            _moved_on_meanwhile(engine, ctx.transaction_id)
        return step

    factor.begin_challenge = begin_challenge
    try:
        page, number, _poll = start(web, seeded=seeded, rp=rp_factory(seeded.first_party))
    finally:
        del factor.begin_challenge
    assert len(begun) == 2, begun  # the page that lost its step began one the login keeps
    assert _status(engine, begun[0]) == "expired", "a request sent for a step the login did not keep is live"
    assert [c["id"] for c in device.pending()] == [begun[1]]
    assert _waited_on(engine)["state"]["challenge_id"] == begun[1]
    assert number == _number(engine, begun[1])
    assert device.answer(begun[1], "approve", number) == {"status": "approved"}
    engine.dispose()


def test_an_activation_code_its_login_could_not_keep_registers_no_phone(push_server, seeded, web, rp_factory):
    """At the enrolment step, push chosen among the methods: the login lost the step while the
    code was issued. The code is expired, and the page shows what the login holds: nothing begun,
    the choice of methods again (push chosen again, a new code works)."""
    from authenticator.push import keys
    from authenticator.push.activation import parse_activation_uri
    from authenticator.push.client import ActivationExpired, PushClient

    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, begun = factor.begin_enrolment, []

    def begin_enrolment(user, ctx):
        step = original(user, ctx)
        begun.append((step.state["activation_id"], step.view["activation_uri"]))
        if len(begun) == 1:
            _moved_on_meanwhile(engine, ctx.transaction_id)
        return step

    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
    page = web.login(seeded.user_email, seeded.password)
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    factor.begin_enrolment = begin_enrolment
    try:
        page = web.submit(choose)
    finally:
        del factor.begin_enrolment
    [(lost, lost_uri)] = begun
    assert _status(engine, lost) == "expired", "an activation code issued for a step the login did not keep is live"
    assert page.status == 200 and "data-activation-uri" not in page.text and _waited_on(engine) == {}
    lost_query = parse_activation_uri(lost_uri)
    with pytest.raises(ActivationExpired):
        PushClient(lost_query["endpoint"], keys.new_private_key()).register(lost_query["code"], "a phone")
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/push")]  # the choice, as the login holds
    page = web.submit(choose)
    uri = page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    query = parse_activation_uri(html.unescape(uri))
    PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "enrolled phone")
    assert push_events(push_server, "push.device_registered") == [(seeded.user_email, "activation")]
    engine.dispose()


def test_the_only_method_to_set_up_is_begun_again_when_its_login_could_not_keep_it(push_server, seeded, web,
                                                                                   rp_factory):
    """Push the one method the organization accepts: the enrolment page begins it by itself. Its
    first code lost, the page is loaded again and shows a new one, which registers the phone."""
    from authenticator.push import keys
    from authenticator.push.activation import parse_activation_uri
    from authenticator.push.client import PushClient
    from idp.policy import settings as policy_settings

    with push_server.context():
        policy_settings.set_allowed_factors(seeded.org_id, ["push"], policy_settings.Actor.cli())
    engine = create_engine(push_server.database_url)
    factor = push_server.app.extensions["idp.factors"].get("push")
    original, begun = factor.begin_enrolment, []

    def begin_enrolment(user, ctx):
        step = original(user, ctx)
        begun.append(step.state["activation_id"])
        if len(begun) == 1:
            _moved_on_meanwhile(engine, ctx.transaction_id)
        return step

    factor.begin_enrolment = begin_enrolment
    try:
        web.get(rp_factory(seeded.first_party).authorization_url(acr_values="urn:idp:acr:mfa"))
        page = web.login(seeded.user_email, seeded.password)
    finally:
        del factor.begin_enrolment
    assert len(begun) == 2, begun
    assert _status(engine, begun[0]) == "expired" and _status(engine, begun[1]) == "pending"
    assert _waited_on(engine)["state"]["activation_id"] == begun[1]
    query = parse_activation_uri(html.unescape(page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")))
    PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "enrolled phone")
    engine.dispose()
