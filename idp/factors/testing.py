"""Test support for factors: an app to test in, users, and the conformance kit every factor runs.

`run_conformance(factor_cls, app, user, answer_enrolment=..., answer_challenge=...)` checks what the
pipeline relies on, for first-party and third-party factors alike:

- the declared class attributes are valid (the registry's own check);
- `begin_enrolment` returns a `Step` whose `state` survives a JSON round trip (the pipeline
  stores it server-side) and whose `view` is a dict;
- garbage responses to `finish_enrolment` and `verify` are `Rejected`, never exceptions, and
  store nothing;
- the enrolment round trip stores exactly one credential, `is_configured_for` turns True and
  `describe` works on it;
- garbage responses to `verify` spend nothing (no counter moved, no code used);
- with `answer_challenge`, the challenge round trip is `Verified` with RFC 8176 `amr` values
  (as the login checks them) and the credential's id;
- nothing is handed to the app's notifier (a code mailed or texted) while a transaction is open:
  on SQLite that transaction holds the database's write lock through the relay's answer, and the
  code would leave before it is stored. Send from a step with
  `directory.send_code_after_commit` (or `directory.after_commit`), which waits for the commit.

Use it from pytest::

    def test_conformance(factor_app, factor_user):
        run_conformance(TotpFactor, factor_app, factor_user,
                        answer_enrolment=lambda step, ctx: {"code": pyotp.TOTP(step.state["secret"]).now()})
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping

from idp.factors.contract import Factor, amr_problem, label_text, validate_class
from idp.factors.types import (AttemptContext, CredentialInfo, Description, Enrolled, Pending, Rejected, Step,
                               UserRef, Verified)

GARBAGE_RESPONSES: tuple[Mapping[str, Any], ...] = (
    {},
    {"code": ""},
    {"code": "not a code"},
    {"code": "0" * 5000},
    {"code": "١٢٣٤٥٦"},  # non-ASCII digits
    {"response": "{"},
    {"response": json.dumps({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}})},
    {"code": None, "response": None},
)

STEP_TEMPLATE_STUB = (
    "<form method=post>{% block fields %}{% endblock %}<button type=submit>Continue</button></form>"
)


# --- an app to test factors in ----------------------------------------------------------------


def make_app(database_url: str, overrides: Mapping[str, Any] | None = None):
    """Build the app through `create_app`; if the rest of the app is not importable yet (modules
    mid-change in a shared tree), fall back to a minimal Flask app with the same factor wiring."""
    config = {"server.database_url": database_url, "server.secret_key": "test-secret-key-for-factors",
              "server.issuer": "http://localhost:5000",
              # Factor tests hash no passwords worth the default argon2 cost.
              "security.argon2_time_cost": 1, "security.argon2_memory_cost": 1024, "security.argon2_parallelism": 1,
              **(overrides or {})}
    try:
        from idp.app import create_app

        app = create_app(config)
    except (ImportError, AttributeError):
        app = _minimal_app(config)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False, SERVER_NAME="localhost:5000")
    _ensure_step_template(app)
    return app


def _minimal_app(config: Mapping[str, Any]):
    from flask import Flask

    from idp import extensions
    from idp.config import load_settings
    from idp.db import db
    from idp.factors import registry
    from idp.security.secrets import KeyRing

    root = Path(__file__).resolve().parent.parent
    app = Flask("idp", template_folder=str(root / "templates"))
    settings = load_settings(config, environ={})
    app.config.update(SECRET_KEY=settings.secret_key)
    app.extensions["idp.settings"] = settings
    app.extensions["idp.keyring"] = KeyRing.from_settings(settings.get("security.encryption_keys") or [],
                                                          settings.secret_key)
    db.init_app(app, settings.database_url)
    extensions.init_app(app, settings)
    registry.init_app(app, settings)
    return app


def _ensure_step_template(app) -> None:
    """Plugin templates extend "login/step.html"; give tests a stub until the real one exists."""
    from jinja2 import ChoiceLoader, DictLoader

    try:
        app.jinja_env.get_template("login/step.html")
    except Exception:
        app.jinja_loader  # noqa: B018 - make sure the app's loader is built
        app.jinja_env.loader = ChoiceLoader([app.jinja_env.loader,
                                             DictLoader({"login/step.html": STEP_TEMPLATE_STUB})])


def create_schema() -> None:
    from idp.db import Base, db

    import idp.models  # noqa: F401 - register every table

    Base.metadata.create_all(db.engine)


def postgres_url_with_schema(base_url: str) -> tuple[str, str]:
    """A URL whose connections use a fresh schema (isolated from other test runs on the same DB)."""
    schema = f"t_factors_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}", schema


def make_user(email: str = "alice@example.com", org_name: str = "Example", **fields) -> UserRef:
    """Insert an organization (if needed) and a user; commit; return the `UserRef`."""
    from sqlalchemy import select

    from idp.db import db
    from idp.factors.directory import user_ref
    from idp.models import Organization, User

    org = db.session.scalars(select(Organization).where(Organization.name == org_name)).first()
    if org is None:
        org = Organization(name=org_name)
        db.session.add(org)
        db.session.flush()
    user = User(public_id=uuid.uuid4().hex, org_id=org.id, email=email, name=fields.pop("name", "Alice Example"),
                **fields)
    db.session.add(user)
    db.session.commit()
    return user_ref(user)


def waiting_login(transaction_id: str, factor_name: str | None, *, ttl: int = 600) -> None:
    """A login transaction `transaction_id` at its second-factor step with `factor_name` in
    progress, as the pipeline holds it while its page waits on an out-of-band answer; committed,
    unless one with this id exists. A device lists and answers only the challenges their login
    still waits on (`ChallengeStore.pending/answer(awaited=True)`): a test that begins a push
    login outside the pipeline makes its login with this."""
    from datetime import timedelta

    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from idp.db import db, utcnow
    from idp.factors.challenges import LOGIN_AT_SECOND_FACTOR
    from idp.models import LoginTransaction

    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    db.session.execute(insert(LoginTransaction).values(
        id=transaction_id, browser_binding="test", state=LOGIN_AT_SECOND_FACTOR, version=1, authz_request={},
        steps_done=[], factor_name=factor_name, created_at=now, expires_at=now + timedelta(seconds=ttl))
        .on_conflict_do_nothing(index_elements=[LoginTransaction.id]))
    db.session.commit()


def second_factor_count(user: UserRef) -> int:
    from idp.factors.store import CredentialStore

    return CredentialStore().second_factors_held(user)


# --- the conformance kit ----------------------------------------------------------------------


def _json_round_trip(state: Any) -> dict:
    assert isinstance(state, dict), f"Step.state must be a dict, not {type(state).__name__}"
    return json.loads(json.dumps(state))


def run_conformance(factor_cls: type[Factor], app, user: UserRef, *,
                    answer_enrolment: Callable[[Step, AttemptContext], Mapping[str, Any]],
                    answer_challenge: Callable[[Step, CredentialInfo, AttemptContext], Mapping[str, Any]] | None
                    = None) -> CredentialInfo:
    """Run the contract checks against `factor_cls` inside `app` (registering it if needed).

    Must be called inside an app (or request) context. Returns the enrolled credential.
    """
    with _no_message_inside_a_transaction():
        return _run_conformance(factor_cls, user, answer_enrolment, answer_challenge)


def _run_conformance(factor_cls, user, answer_enrolment, answer_challenge) -> CredentialInfo:
    from idp.db import db
    from idp.factors.registry import current_registry

    problems = validate_class(factor_cls)
    assert not problems, f"{factor_cls.__name__}: {problems}"
    registry = current_registry()
    factor = registry.get(factor_cls.name) if factor_cls.name in registry else registry.register(factor_cls)
    assert isinstance(factor, factor_cls)
    # Enrolment as the security page begins it (no login: one that a login begins may depend on
    # that login still wanting it, as push's activation does); the challenge as a login's.
    enrolling = registry.context(factor, remote_addr="127.0.0.1", user_agent="pytest")
    ctx = registry.context(factor, transaction_id="conformance", client_name="Conformance client",
                           remote_addr="127.0.0.1", user_agent="pytest")
    before = factor.store.count(user)

    # Enrolment: garbage first (nothing stored), then the real answer.
    step = factor.begin_enrolment(user, enrolling)
    assert isinstance(step, Step) and isinstance(step.view, dict)
    state = _json_round_trip(step.state)
    for garbage in GARBAGE_RESPONSES:
        outcome = factor.finish_enrolment(user, state, garbage, enrolling)
        assert isinstance(outcome, Rejected), f"finish_enrolment({garbage!r}) returned {outcome!r}"
        assert isinstance(outcome.reason, str) and outcome.reason
        db.session.rollback()
        assert factor.store.count(user) == before, f"finish_enrolment({garbage!r}) stored something"
    outcome = factor.finish_enrolment(user, state, answer_enrolment(step, enrolling), enrolling)
    assert isinstance(outcome, Enrolled), f"enrolment round trip returned {outcome!r}"
    assert outcome.amr is None or not amr_problem(outcome.amr), amr_problem(outcome.amr)
    db.session.commit()
    credential = outcome.credential
    assert isinstance(credential, CredentialInfo) and credential.factor == factor.name
    assert credential.id in [c.id for c in factor.store.list(user)]
    assert factor.is_configured_for(user)
    description = factor.describe(credential)
    assert isinstance(description, Description) and description.id == credential.id
    assert label_text(description.label)

    # Challenge: garbage is Rejected; the real answer (when the test can produce one) is Verified.
    step = factor.begin_challenge(user, ctx)
    assert isinstance(step, Step) and isinstance(step.view, dict)
    state = _json_round_trip(step.state)
    spent = _spent(factor, user)
    for garbage in GARBAGE_RESPONSES:
        outcome = factor.verify(user, state, garbage, ctx)
        # A factor that completes elsewhere may rightly answer garbage with Pending (nobody answered yet).
        allowed = (Rejected, Pending) if factor.supports_poll else (Rejected,)
        assert isinstance(outcome, allowed), f"verify({garbage!r}) returned {outcome!r}"
        db.session.rollback()
        assert _spent(factor, user) == spent, f"verify({garbage!r}) spent a counter or a code"
    if answer_challenge is not None:
        step = factor.begin_challenge(user, ctx)
        state = _json_round_trip(step.state)
        outcome = factor.verify(user, state, answer_challenge(step, credential, ctx), ctx)
        assert isinstance(outcome, Verified), f"challenge round trip returned {outcome!r}"
        assert not amr_problem(outcome.amr), amr_problem(outcome.amr)  # (the login refuses it)
        assert outcome.credential_id in [c.id for c in factor.store.list(user)]
        db.session.commit()
    return credential


class _Watched:
    """The app's notifier, refusing a message handed to it while the session holds a transaction."""

    def __init__(self, notifier) -> None:
        self.notifier = notifier

    def send_code(self, *args, **kwargs) -> None:
        from idp.db import db

        assert not db.in_transaction(), (
            "a message was sent while a transaction was open (on SQLite: the database's write lock, held "
            "through the relay's answer; and the code left before it was stored): send it with "
            "directory.send_code_after_commit or directory.after_commit, which wait for the commit")
        self.notifier.send_code(*args, **kwargs)


@contextmanager
def _no_message_inside_a_transaction():
    from flask import current_app

    from idp.notify.factory import EXTENSION_KEY, current_notifier

    notifier = current_notifier()
    current_app.extensions[EXTENSION_KEY] = _Watched(notifier)
    try:
        yield
    finally:
        current_app.extensions[EXTENSION_KEY] = notifier


def _spent(factor: Factor, user: UserRef) -> list:
    """What the gates move (counters, uses) on the user's credentials of `factor`."""
    return [(c.id, c.counter, c.used_at) for c in factor.store.list(user)]


def database_url_for_tests(tmp_path) -> str:
    """SQLite in `tmp_path`, the default for unit tests."""
    return "sqlite:///" + os.fspath(Path(tmp_path) / "factors.sqlite")
