"""Recovery codes: conformance, shown once and stored hashed, single use, regeneration, races."""
import threading

import pytest
from flask import render_template
from sqlalchemy import select

from idp.db import db
from idp.factors import Enrolled, Rejected, Verified
from idp.factors.registry import current_registry
from idp.factors.testing import make_user, run_conformance, second_factor_count
from idp.models import Credential
from idp_plugins.recovery_codes import codes
from idp_plugins.recovery_codes.factor import RecoveryCodesFactor


@pytest.fixture
def factor(factor_app):
    return current_registry().get("recovery_codes")


@pytest.fixture
def ctx(factor):
    return current_registry().context(factor)


def enrol(factor, user, ctx):
    step = factor.begin_enrolment(user, ctx)
    outcome = factor.finish_enrolment(user, step.state, {"confirm": "yes"}, ctx)
    assert isinstance(outcome, Enrolled)
    db.session.commit()
    return step.view["codes"]


def test_conformance(factor_app, factor_user):
    shown = {}

    def answer_enrolment(step, ctx):
        shown["codes"] = step.view["codes"]
        return {"confirm": "yes"}

    run_conformance(RecoveryCodesFactor, factor_app, factor_user, answer_enrolment=answer_enrolment,
                    answer_challenge=lambda step, cred, ctx: {"code": shown["codes"][0]})


def test_ten_codes_stored_hashed_not_counted(factor, factor_user, ctx):
    plain = enrol(factor, factor_user, ctx)
    assert len(plain) == 10 and len(set(plain)) == 10
    rows = db.session.scalars(select(Credential).where(Credential.factor == "recovery_codes")).all()
    assert len(rows) == 10
    for row in rows:
        assert row.secret_ciphertext is None and len(row.lookup_key) == 64
        assert all(codes.normalise(code) not in repr(row.public_json) + row.lookup_key for code in plain)
    assert second_factor_count(factor_user) == 0  # a recovery factor is not a second factor
    assert factor.is_configured_for(factor_user)


def test_asking_about_the_codes_left_opens_no_transaction(factor, factor_user, ctx):
    """Every login page that offers the codes asks whether the user has some left: answered from
    the store's list (the one read of the user's credentials those pages make anyway), not from
    a COUNT through the session, which opened a transaction (on SQLite, the write lock) to read."""
    plain = enrol(factor, factor_user, ctx)
    db.session.remove()
    assert factor.is_configured_for(factor_user)
    assert factor.begin_challenge(factor_user, ctx).view == {"remaining": 10}
    assert not db.in_transaction()
    assert isinstance(factor.verify(factor_user, {}, {"code": plain[0]}, ctx), Verified)
    db.session.commit()
    assert factor.begin_challenge(factor_user, ctx).view == {"remaining": 9}


def test_code_works_once_and_remaining_is_reported(factor, factor_user, ctx):
    plain = enrol(factor, factor_user, ctx)
    outcome = factor.verify(factor_user, {}, {"code": plain[3].upper().replace("-", " ")}, ctx)
    assert isinstance(outcome, Verified) and outcome.amr == ("otp",) and outcome.facts == {"remaining": 9}
    again = factor.verify(factor_user, {}, {"code": plain[3]}, ctx)
    assert again == Rejected("replayed") and "Use another one" in str(again.message)  # no "next code" to wait for
    assert factor.verify(factor_user, {}, {"code": "zzzzz-zzzzz"}, ctx) == Rejected("invalid_code")


def test_another_users_code_is_refused(factor, factor_user, ctx):
    bob = make_user("bob@example.com")
    bobs = enrol(factor, bob, ctx)
    enrol(factor, factor_user, ctx)
    assert factor.verify(factor_user, {}, {"code": bobs[0]}, ctx) == Rejected("invalid_code")


def test_regenerating_invalidates_the_old_set(factor, factor_user, ctx):
    old = enrol(factor, factor_user, ctx)
    new = factor.regenerate(factor_user)
    db.session.commit()
    assert factor.verify(factor_user, {}, {"code": old[0]}, ctx) == Rejected("invalid_code")
    assert isinstance(factor.verify(factor_user, {}, {"code": new[0]}, ctx), Verified)
    assert factor.store.count(factor_user) == 10


def test_not_configured_once_all_are_used(factor_app, factor_user):
    factor = current_registry().get("recovery_codes")
    ctx = current_registry().context(factor)
    plain = factor.regenerate(factor_user)
    db.session.commit()
    for code in plain:
        assert isinstance(factor.verify(factor_user, {}, {"code": code}, ctx), Verified)
    assert not factor.is_configured_for(factor_user)
    assert factor.describe(factor.store.list(factor_user)[0]).facts == {"remaining": 0}


def test_unconfirmed_enrolment_stores_nothing(factor, factor_user, ctx):
    step = factor.begin_enrolment(factor_user, ctx)
    assert factor.finish_enrolment(factor_user, step.state, {}, ctx) == Rejected("not_confirmed", False)
    assert factor.store.count(factor_user) == 0
    assert step.view["codes"][0] not in str(step.state)


def test_templates_render(factor, factor_user, ctx, factor_app):
    with factor_app.test_request_context():
        step = factor.begin_enrolment(factor_user, ctx)
        html = render_template(["factors/recovery_codes/enrol.html"], view=step.view, form=None)
        assert all(code in html for code in step.view["codes"]) and 'name="confirm"' in html
        assert 'download="recovery-codes.txt"' in html
        html = render_template(["factors/recovery_codes/challenge.html"], view={"remaining": 7}, form=None)
        assert 'name="code"' in html and "7" in html


@pytest.mark.postgres
def test_same_code_by_ten_threads_is_accepted_once(pg_app):
    user = make_user("race@example.com")
    factor = current_registry().get("recovery_codes")
    ctx = current_registry().context(factor)
    code = factor.regenerate(user)[0]
    db.session.commit()
    barrier, results = threading.Barrier(10), []

    def worker():
        with pg_app.app_context():
            barrier.wait()
            try:
                results.append(factor.verify(user, {}, {"code": code}, ctx))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(isinstance(r, Verified) for r in results) == 1
    assert sum(r == Rejected("replayed") for r in results) == 9
