"""Value objects that cross the factor boundary: who, in what context, and what happened.

Everything here is a frozen dataclass (or an enum) so that the pipeline, the
account page and the plugins exchange plain values, never ORM rows or the Flask
session. A plugin that needs to remember something between `begin_*` and
`finish_*`/`verify` puts it in `Step.state` (JSON-serialisable); the pipeline
stores that server-side and hands it back unchanged.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Union


class FactorKind(str, enum.Enum):
    """What a factor is for. Only SECOND_FACTOR credentials count towards `User.second_factor_count`."""

    SECOND_FACTOR = "second_factor"
    RECOVERY = "recovery"


@dataclass(frozen=True)
class UserRef:
    """The user a factor acts for (built by the core from a `User` row)."""

    id: int
    org_id: int | None
    username: str
    display_name: str = ""
    email: str = ""
    locale: str | None = None


@dataclass(frozen=True)
class AttemptContext:
    """Facts about the current attempt, injected so plugins never read `request` or the clock.

    `settings` is this factor's own config section (`factors.<name>`); `urls` builds
    URLs to the plugin's own endpoints (see `FactorUrls`); `rp_id`/`origin` are the
    WebAuthn relying party id and expected origin. `session_id`: the public id (`sid`) of the
    signed-in session that asked, on the security page (None at a login, whose
    `transaction_id` says which, and from the CLI): what an enrolment there creates out of the
    page's sight (a push activation) lives only as long as that session
    (`directory.session_live`).
    """

    transaction_id: str | None
    client_name: str | None
    remote_addr: str | None
    user_agent: str | None
    now: datetime
    settings: Mapping[str, Any]
    urls: Any
    issuer: str
    rp_id: str = ""
    origin: str = ""
    session_id: str | None = None


@dataclass(frozen=True)
class Step:
    """What a `begin_*` call produced: `state` to keep server-side, `view` for the template."""

    state: dict
    view: dict


@dataclass(frozen=True)
class CredentialInfo:
    """The credential store's public view of one `credentials` row (no secret, no ORM object)."""

    id: int
    user_id: int
    factor: str
    label: str
    public: dict
    lookup_key: str | None
    counter: int
    created_at: datetime
    last_used_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Description:
    """What `Factor.describe` returns for the account and admin lists.

    `facts` holds short extra public details (e.g. `{"digits": 6}` or
    `{"remaining": 7}`), rendered as key/value pairs. A moment is a `datetime` (naive UTC),
    which the pages show in the reader's format, in UTC (`{{ moment | utc }}`), never a string.
    """

    id: int
    factor: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    facts: dict = field(default_factory=dict)


# --- outcomes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """The response proves possession. `amr` lists RFC 8176 values; `facts` carries extras
    (e.g. `{"remaining": 7}` after a recovery code) for the page and the audit event."""

    credential_id: int
    amr: tuple[str, ...]
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """The response is wrong. `reason` is a stable code ("invalid_code", "replayed", "expired",
    "sign_count_regressed", "wrong_number"), for the audit log and the tests; `counts_as_failure`
    feeds the brute-force limiter.

    `message` is what the person is told, for a reason only this factor gives: a lazily
    translated string (`_l("This security key may have been cloned ...")`). None lets the core
    word it: the reasons every factor may give (`invalid_code`, `replayed`, `expired`) have its
    own wording, any other gets "That did not work. Try again." Outcomes compare by reason and
    counting, not by message."""

    reason: str
    counts_as_failure: bool = True
    message: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Pending:
    """Not decided yet (push): ask again in `retry_after` seconds."""

    retry_after: float


@dataclass(frozen=True)
class Denied:
    """The user refused elsewhere (push "deny"); `fraud` when they reported it as not theirs.

    `message`, as `Rejected`'s: the factor's own wording for a reason only it gives (push's
    `wrong_number`: the user meant to approve); None lets the core say "The request was denied"."""

    reason: str
    fraud: bool = False
    message: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Enrolled:
    """Enrolment finished: the new credential (already in the store, not yet committed).

    `view` may carry something to show once after enrolment (recovery codes). `amr`: what the
    enrolment proved, when it depends on the credential (a synced passkey is "swk", a security
    key "hwk"); None means the factor's own `amr`."""

    credential: CredentialInfo
    view: dict = field(default_factory=dict)
    amr: tuple[str, ...] | None = None


VerifyOutcome = Union[Verified, Rejected, Pending, Denied]
EnrolOutcome = Union[Enrolled, Rejected]


class FactorUrls:
    """URL builder for a plugin's own endpoints, bound to its name.

    `urls.static("webauthn.js")` is the plugin's static file; `urls.endpoint("activate", code=...)`
    is an endpoint of its device blueprint. Works inside a request or app context with
    SERVER_NAME; `_external=True` is passed through.
    """

    def __init__(self, factor_name: str, url_for: Callable[..., str] | None = None) -> None:
        self.factor_name = factor_name
        self._url_for = url_for

    def _build(self, endpoint: str, **values: Any) -> str:
        if self._url_for is not None:
            return self._url_for(endpoint, **values)
        from flask import url_for

        return url_for(endpoint, **values)

    def static(self, filename: str, **values: Any) -> str:
        return self._build(f"factor_{self.factor_name}.static", filename=filename, **values)

    def endpoint(self, endpoint: str, **values: Any) -> str:
        return self._build(f"factor_{self.factor_name}_device.{endpoint}", **values)
