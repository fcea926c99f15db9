"""The factor plugin contract: what a second factor (or recovery method) must declare and implement.

A factor is a class registered under the entry-point group `idp.factors`; the
registry reads its class attributes without instantiating it, validates them,
then builds one instance per app with `Factor(store=..., challenges=...,
settings=...)`. The pipeline (`idp/login`) and the account page drive it only
through the methods below. None of them touches the Flask session, the request
or the models: what the factor needs comes in as arguments (`UserRef`,
`AttemptContext`, the `state` it returned earlier, the submitted `response`),
and what it keeps goes through `self.store` (credentials) and `self.challenges`
(out-of-band challenges).

A minimal factor::

    class EmailCodeFactor(Factor):
        name = "email_code"
        label = _l("Code by e-mail")
        kind = FactorKind.SECOND_FACTOR
        amr = ("otp",)

        def begin_enrolment(self, user, ctx): ...
        def finish_enrolment(self, user, state, response, ctx): ...
        def begin_challenge(self, user, ctx): ...
        def verify(self, user, state, response, ctx): ...

Outcomes are values, not exceptions: `Verified`, `Rejected`, `Pending`, `Denied`
from `verify`/`poll`, `Enrolled` or `Rejected` from `finish_enrolment`. Raise only
`FactorError` subclasses, and only for operator problems: the login logs one, rolls back
what the plugin wrote and offers the user's other methods (idp.login.steps.factor_step).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from idp.factors.types import (
    AttemptContext, CredentialInfo, Description, EnrolOutcome, FactorKind, Step, UserRef, VerifyOutcome,
)

if TYPE_CHECKING:  # pragma: no cover
    import click
    from flask import Blueprint

    from idp.factors.challenges import ChallengeStore
    from idp.factors.store import CredentialStore

# RFC 8176 section 2 registry values; `amr` must use these (the registry checks).
RFC8176_AMR = frozenset({
    "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pop", "pwd", "rba", "retina",
    "sc", "sms", "swk", "tel", "user", "vbm", "wia",
})


def amr_problem(values: Any) -> str | None:
    """What is wrong with `amr` values a factor declares or an outcome (`Verified`, `Enrolled`)
    carries, or None: they must be a non-empty tuple (or list) of RFC 8176 values. They end in
    the ID token as they are: a bare string ("otp") would be spelt out letter by letter, an
    empty list would make a second factor proven read as the password alone."""
    if not isinstance(values, (tuple, list)) or not values \
            or any(not isinstance(v, str) or v not in RFC8176_AMR for v in values):
        return f"amr {values!r} must be a non-empty tuple of RFC 8176 values"
    return None


def untranslated(label: Any) -> str:
    """A lazily translated label's English message, whatever the request's language: what a
    factor stores when it names a credential itself (see `Factor.own_labels`)."""
    args = getattr(label, "_args", None)
    return str(args[0]) if args else str(label)


LABEL_MAX = 200  # characters of a credential's name (Credential.label)


def label_too_long(label: str) -> str | None:
    """None, or the message (in the request's language) that refuses a name a person typed, once
    it is display text, for being longer than LABEL_MAX. The forms' `maxlength` keeps a browser
    within it, so only a hand-made request sends more: it is refused, changing nothing, not cut
    silently (the store cuts a name a device or a command gave, as a last resort)."""
    if len(label) <= LABEL_MAX:
        return None
    from idp.template_i18n import plural_text

    return plural_text("A name has at most %(num)s character.", "A name has at most %(num)s characters.", LABEL_MAX)


def default_label(factor: "Factor", count: int) -> str:
    """The name a factor gives a user's `count`-th credential of its kind when the user typed
    none: its label ("Authenticator app", then "Authenticator app 2"), stored in English and
    shown in the reader's language (`Factor.shown_label`)."""
    text = untranslated(factor.label)
    return text if count <= 1 else f"{text} {count}"


def label_text(label: Any) -> str:
    """A (lazily translated) label as text; outside a request (CLI, startup) the untranslated message."""
    try:
        return str(label)
    except RuntimeError:
        return untranslated(label) if getattr(label, "_args", None) else ""


class Factor:
    """Base class of every factor. Subclasses set the class attributes and implement the methods
    marked "Developers MUST implement"."""

    #: Stable id; must equal the entry-point name (`totp`, `webauthn`, ...). Stored in `credentials.factor`.
    name: ClassVar[str] = ""
    #: Translatable display name ("Authenticator app"); use `flask_babel.lazy_gettext`.
    label: ClassVar[Any] = ""
    #: `FactorKind.SECOND_FACTOR` or `FactorKind.RECOVERY` ("I can't use my usual method").
    kind: ClassVar[FactorKind] = FactorKind.SECOND_FACTOR
    #: RFC 8176 values a successful `verify` contributes by default (a `Verified` may refine them).
    amr: ClassVar[tuple[str, ...]] = ()
    #: Several credentials per user (several TOTP apps, several security keys). False: one (a set
    #: of recovery codes, one mailbox): shown as one row, and not offered on the security page
    #: again while the user holds it.
    allow_multiple: ClassVar[bool] = True
    #: The user may add it from the account page. False for admin-issued factors, whose credentials
    #: the user's page shows but only an admin renames or revokes (the page refuses with a 403).
    user_enrollable: ClassVar[bool] = True
    #: Completes out of band: the page calls `poll` until it stops answering `Pending`.
    supports_poll: ClassVar[bool] = False
    #: Bound to the origin (WebAuthn). Declared for "phishing-resistant only" policies and `acr`;
    #: no part of the core reads it yet (no such policy, no such acr value).
    phishing_resistant: ClassVar[bool] = False
    #: `begin_challenge` does nothing outside the `Step` it returns (it sends no message and
    #: writes no row): the pipeline may then begin it as the login enters the second-factor
    #: step, in that step's own write, so that the challenge page only reads (a begin that
    #: loses a race with a parallel submission is simply dropped). Leave False for a factor
    #: that notifies a device or records a challenge (push).
    begins_quietly: ClassVar[bool] = False
    #: Every answer spends the challenge, accepted or refused: its response signs a nonce from
    #: `state` (WebAuthn). After a `Rejected` from `verify` or `finish_enrolment`, the login
    #: (and the security page) begin a new challenge or enrolment before showing the page
    #: again, so the refused one's nonce is answered nowhere twice. False (TOTP, recovery
    #: codes): the page keeps its challenge for another try (a mistyped code typed again), and
    #: the factor refuses replays itself (TOTP's last accepted time step).
    one_answer_per_challenge: ClassVar[bool] = False
    #: Labels the factor gives credentials itself (no person typed them), as stored (the English
    #: message) -> the lazy translation: shown in the reader's language (`shown_label`), while the
    #: rows, `idp user show --json` and the audit log keep the stable English text. A label a
    #: person typed or renamed is shown as typed. Example: `{"Recovery QR code": _l("Recovery QR code")}`.
    own_labels: ClassVar[Mapping[str, Any]] = {}
    #: The factor's settings (`[factors.<name>]`) with their defaults, e.g. `{"ttl": 300,
    #: "sender": ""}`; optional. Declared, the registry refuses a key not among them (a typo
    #: would otherwise be ignored) and a value of another type than its default's, as the core
    #: checks its own settings, and `self.settings` holds the defaults merged with what is set.
    #: None (the default): the section is handed over as it is, unchecked.
    default_settings: ClassVar[Mapping[str, Any] | None] = None

    def __init__(self, store: "CredentialStore", challenges: "ChallengeStore",
                 settings: Mapping[str, Any] | None = None) -> None:
        self.store = store
        self.challenges = challenges
        self.settings = settings or {}

    # --- discovery -----------------------------------------------------------------------

    def is_configured_for(self, user: UserRef) -> bool:
        """Does `user` hold at least one usable credential of this factor?

        Default: the store has a non-revoked credential. Override when usability needs more
        (e.g. recovery codes: at least one unused code)::

            if factor.is_configured_for(user_ref):
                offer(factor)
        """
        return self.store.count(user) > 0

    # --- enrolment -----------------------------------------------------------------------

    def begin_enrolment(self, user: UserRef, ctx: AttemptContext) -> Step:
        """Create pending enrolment material. Developers MUST implement.

        Nothing is stored yet: the material goes into `Step.state` (kept server-side by the
        caller) and what the page shows into `Step.view`::

            def begin_enrolment(self, user, ctx):
                secret = pyotp.random_base32()
                return Step(state={"secret": secret}, view={"qr_svg": ..., "uri": ...})

        Returns: `Step(state, view)`; `state` must be JSON-serialisable.
        """
        raise NotImplementedError

    def finish_enrolment(self, user: UserRef, state: dict, response: Mapping[str, Any],
                         ctx: AttemptContext) -> EnrolOutcome:
        """Verify possession of the pending material, then store the credential. Developers MUST implement.

        `state` is exactly what `begin_enrolment` returned; `response` the submitted fields::

            if not valid(state["secret"], response.get("code")):
                return Rejected("invalid_code")
            return Enrolled(self.store.create(user, label=..., public={...}, secret=...))

        Returns:
            `Enrolled(credential)` -- the credential was created (the caller commits, with its audit event);
            `Rejected(reason, message=None)` -- nothing was stored; the page shows the same step
                again, with `message` (the factor's wording of a reason of its own) or the core's.
        """
        raise NotImplementedError

    # --- login ---------------------------------------------------------------------------

    def begin_challenge(self, user: UserRef, ctx: AttemptContext) -> Step:
        """Produce what the challenge page needs. Developers MUST implement.

        Called when the page first shows the factor, when the user picks it again, after an
        expired challenge and, for a factor with `one_answer_per_challenge`, after every
        rejected answer; the new `state` replaces the old one, so such a factor's challenge
        is never answered twice (one that keeps its challenge across tries guards replays
        itself, as TOTP's time step does). TOTP needs nothing (`Step({}, {})`); WebAuthn
        returns assertion options and keeps the challenge in `state`::

            options = generate_authentication_options(...)
            return Step(state={"challenge": b64(options.challenge)}, view={"options_json": ...})
        """
        raise NotImplementedError

    def verify(self, user: UserRef, state: dict, response: Mapping[str, Any],
               ctx: AttemptContext) -> VerifyOutcome:
        """Check the response against the user's credentials. Developers MUST implement.

        Consume counters atomically through the store (`advance_counter`, `consume`), never by
        reading then writing. Garbage input is a `Rejected`, never an exception::

            outcome = factor.verify(user_ref, txn.factor_state, request.form, ctx)
            if isinstance(outcome, Verified): ...

        Returns:
            `Verified(credential_id, amr, facts)` -- possession proven; the pipeline records the step;
            `Rejected(reason, counts_as_failure=True, message=None)` -- wrong/replayed/expired; counts
                towards the brute-force limit unless `counts_as_failure` is False (e.g. an empty form);
                the page says `message` when the factor gave one (a reason only it knows, lazily
                translated), else the core's wording of the reason;
            `Pending(retry_after)` -- (poll factors) not decided yet;
            `Denied(reason, fraud=False, message=None)` -- the user refused elsewhere; `fraud` when
            reported as not theirs.
        """
        raise NotImplementedError

    def poll(self, user: UserRef, state: dict, ctx: AttemptContext) -> VerifyOutcome:
        """Non-blocking status of an out-of-band challenge. Implement when `supports_poll` is True.

        Same outcomes as `verify`; `Pending(retry_after=2.0)` while nobody answered::

            outcome = factor.poll(user_ref, txn.factor_state, ctx)
        """
        raise NotImplementedError(f"factor {self.name!r} does not support polling")

    def wait(self, user: UserRef, state: dict, ctx: AttemptContext, timeout: float = 20.0) -> VerifyOutcome:
        """Like `poll`, but may block up to `timeout` seconds while the outcome is `Pending`.

        The waiting login page long-polls through this (`/login/<handle>/poll?wait=N`), so it
        moves on within milliseconds of an answer given elsewhere. Default: `poll` at once.
        Blocking holds a worker thread: deploy with threaded workers (gunicorn gthread)::

            outcome = factor.wait(user_ref, state, ctx, timeout=20)
        """
        return self.poll(user, state, ctx)

    # --- extras --------------------------------------------------------------------------

    def device_blueprint(self) -> "Blueprint | None":
        """Optional device-facing endpoints (push activation, long-poll), mounted at `/factors/<name>/`.

        Return a `flask.Blueprint` (its endpoints become `factor_<name>_device.<endpoint>`), or None::

            def device_blueprint(self):
                bp = Blueprint("push_device", __name__)
                bp.add_url_rule("/activate", view_func=..., methods=["POST"])
                return bp
        """
        return None

    def describe(self, credential: CredentialInfo) -> Description:
        """Public facts about one credential for the account and admin lists.

        Default: label and times. Override to add facts (digits, remaining codes)::

            d = factor.describe(info)   # Description(id, factor, label, created_at, last_used_at, facts)
        """
        return Description(id=credential.id, factor=credential.factor,
                           label=self.shown_label(credential), created_at=credential.created_at,
                           last_used_at=credential.last_used_at, facts={})

    def shown_label(self, credential: CredentialInfo) -> str:
        """The credential's label as a person reads it: as typed, or one of `own_labels` (or the
        factor's own name, `default_label`) in the reader's language, or the factor's label when
        it has none."""
        if not credential.label:
            return label_text(self.label)
        own_labels = {untranslated(self.label): self.label, **self.own_labels}
        # Numbered: "Authenticator app 2" (default_label), or "Recovery QR code (2)" (the store's
        # distinct_label).
        base, number = credential.label, ""
        if base.endswith(")") and " (" in base:
            head, _sep, tail = base[:-1].rpartition(" (")
            if tail.isdigit() and head in own_labels:
                base, number = head, f" ({tail})"
        elif " " in base:
            head, _sep, tail = base.rpartition(" ")
            if tail.isdigit() and head in own_labels:
                base, number = head, f" {tail}"
        own = own_labels.get(base)
        return credential.label if own is None else label_text(own) + number

    def on_removed(self, credential: CredentialInfo) -> None:
        """Optional cleanup after the user or an admin revoked `credential` (e.g. cancel pending push
        challenges). Called in the same transaction as the revocation, inside a savepoint; must not
        commit. An exception is logged and rolls back only this hook's writes: the revocation stands."""
        return None

    def on_account_disabled(self, user: UserRef, *, actor: str, actor_id: int | None) -> None:
        """Optional: the user's account was just disabled (an admin, `idp user disable`). Revoke
        what was handed out to let someone back into it later, which re-enabling must not bring
        back (an admin-issued recovery QR code: a suspension after a fraud report must not be
        undone by a code issued before it), and audit it. Challenges, sessions and tokens are the
        core's to end already (idp.users.sign_out_everywhere). Called in the disabling's
        transaction, after the user's row is locked, inside a savepoint; must not commit. An
        exception is logged and rolls back only this hook's writes: the disabling stands."""
        return None

    def on_account_promoted(self, user: UserRef, *, actor: str, actor_id: int | None) -> None:
        """Optional: the user was just made an administrator of their organization (an admin's
        page, `idp user set-role`). What another administrator handed out for the account as a
        member's (an admin-issued recovery QR code) is now the operator's to give: revoke it,
        with its audit event. Called in the promotion's transaction, after the user's row is
        changed, inside a savepoint; must not commit. An exception is logged and rolls back only
        this hook's writes: the promotion stands."""
        return None

    def parse_import(self, item: Mapping[str, Any]) -> Any:
        """Optional: check one credential brought from another system, as `idp user import` reads
        it (the list under the factor's name on a user's line: TOTP's `{"secret": "JBSW...",
        "label": ..., "digits": 6}`), and return what `import_credential` stores. Raise
        ValueError with a one-line reason in English for anything wrong: the import reports it
        with the line's number and writes nothing. Reads and writes nothing (the whole file is
        checked before anything is written). Default: the factor imports nothing.
        `idp factor totp import` goes through the same two calls::

            prepared = factor.parse_import({"secret": text, "digits": 6})
            credential = factor.import_credential(user, prepared)
        """
        raise NotImplementedError(f"the {self.name} factor imports no credentials")

    def import_credential(self, user: UserRef, prepared: Any) -> CredentialInfo:
        """Optional, with `parse_import`: store what it returned as a credential of `user`, in the
        caller's transaction (never commit). The caller records the audit event (the import's
        own: a migrated user's credential mails no "new sign-in method" notice) and owes the
        user recovery codes (`directory.owe_recovery_codes`). Raise ValueError when the user
        cannot take it (the same secret held already)."""
        raise NotImplementedError(f"the {self.name} factor imports no credentials")

    @classmethod
    def imports_credentials(cls) -> bool:
        """Whether the factor implements `parse_import` and `import_credential`."""
        return cls.parse_import is not Factor.parse_import and cls.import_credential is not Factor.import_credential

    @classmethod
    def cli_command(cls) -> "click.Command | None":
        """Optional click command or group, mounted as `idp factor <name>`.

        Runs with an app context (use `idp.factors.cli.with_app_context`); get the live instance with
        `current_registry().get(cls.name)`. The command exists even when the factor is listed in
        `factors.disabled` (the command tree is built before the settings are read): `get` then
        raises `FactorNotFound`, which `idp` prints as one line, like any `FactorError`::

            @classmethod
            def cli_command(cls):
                @click.group(name=cls.name)
                def group(): ...
                return group
        """
        return None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{type(self).__name__} {self.name!r}>"


def validate_class(cls: type, expected_name: str | None = None) -> list[str]:
    """The problems with a factor class's declared attributes (empty list: valid)."""
    problems: list[str] = []
    if not isinstance(cls, type) or not issubclass(cls, Factor):
        return [f"{cls!r} is not a subclass of idp.factors.Factor"]
    if not isinstance(cls.name, str) or not cls.name or not cls.name.replace("_", "").isalnum() \
            or not cls.name.islower():
        problems.append(f"name {cls.name!r} must be a non-empty lowercase identifier")
    if expected_name is not None and cls.name != expected_name:
        problems.append(f"name {cls.name!r} differs from its entry-point name {expected_name!r}")
    if not label_text(cls.label):
        problems.append("label must not be empty")
    if not isinstance(cls.kind, FactorKind):
        problems.append(f"kind {cls.kind!r} must be a FactorKind")
    if not isinstance(cls.amr, tuple) or amr_problem(cls.amr):
        problems.append(f"amr {cls.amr!r} must be a non-empty tuple of RFC 8176 values")
    for flag in ("allow_multiple", "user_enrollable", "supports_poll", "phishing_resistant", "begins_quietly",
                 "one_answer_per_challenge"):
        if not isinstance(getattr(cls, flag), bool):
            problems.append(f"{flag} must be a bool")
    if cls.default_settings is not None and not isinstance(cls.default_settings, Mapping):
        problems.append("default_settings must be a mapping of setting names to their defaults")
    required = ["begin_enrolment", "finish_enrolment", "begin_challenge", "verify"]
    if cls.supports_poll:
        required.append("poll")
    for method in required:
        if getattr(cls, method) is getattr(Factor, method):
            problems.append(f"{method}() is not implemented")
    return problems
