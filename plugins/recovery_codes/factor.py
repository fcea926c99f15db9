"""Recovery codes: ten single-use codes (configurable), shown once, stored as keyed hashes.

Enrolment generates a set and keeps it sealed in the login state until the user
confirms they saved it; `finish_enrolment` then replaces any previous set in one
transaction (`store.replace_set`), so regenerating invalidates the old codes. At
login a code is found by its HMAC (one indexed lookup) and spent by
`store.consume` (one `UPDATE ... WHERE used_at IS NULL`), so it works once even
under concurrent requests. `Verified.facts["remaining"]` says how many are left. Spending the
last one owes the user a new set (`directory.owe_recovery_codes`): their next login that proves
their usual second factor shows it once, as after a factor set up outside the login.
"""
from __future__ import annotations

import json

from flask import current_app
from flask_babel import lazy_gettext as _l

from idp.factors import (Description, Enrolled, Factor, FactorKind, FactorMisconfigured, Rejected, Step, Verified,
                         label_text)
from idp.factors import directory

from idp_plugins.recovery_codes import codes


class RecoveryCodesFactor(Factor):
    name = "recovery_codes"
    label = _l("Recovery codes")
    kind = FactorKind.RECOVERY
    # RFC 8176 has no value for recovery codes. "otp" (one-time password) is the closest and the common
    # choice: each code is a one-time secret value the user types. Not "kba" (nothing the user knows
    # about themselves) and not "pwd" (it is not the reusable password).
    amr = ("otp",)
    # One set per user (its codes are several rows); enrolling again replaces the set.
    allow_multiple = False
    user_enrollable = True

    def __init__(self, store, challenges, settings=None) -> None:
        super().__init__(store, challenges, settings)
        self.count()  # checked as the app starts: one configuration line, not a silent clamp

    def count(self) -> int:
        count = self.settings.get("count", 10)
        if not isinstance(count, int) or not 1 <= count <= 50:
            raise FactorMisconfigured(f"factors.recovery_codes.count must be between 1 and 50, not {count!r}")
        return count

    def _pepper(self) -> bytes:
        return codes.derive_pepper(current_app.secret_key, str(self.settings.get("pepper") or ""))

    def _items(self, user, plain: list[str]) -> list[dict]:
        pepper = self._pepper()
        return [{"label": f"{label_text(self.label)} #{i}", "public": {},
                 "lookup_key": codes.digest(pepper, user.id, codes.normalise(code))}
                for i, code in enumerate(plain, 1)]

    # --- enrolment -----------------------------------------------------------------------

    def begin_enrolment(self, user, ctx):
        plain = codes.generate(self.count())
        sealed = self.store.seal_pending(user, json.dumps(plain).encode())
        return Step(state={"codes": sealed}, view={"codes": plain, "text": "\n".join(plain) + "\n",
                                                   "count": len(plain)})

    def finish_enrolment(self, user, state, response, ctx):
        opened = self.store.open_pending(user, state.get("codes"))
        if opened is None:
            return Rejected("expired", counts_as_failure=False)
        if str(response.get("confirm") or "").lower() not in ("1", "on", "yes", "true"):
            return Rejected("not_confirmed", counts_as_failure=False)
        credentials = self.store.replace_set(user, self._items(user, json.loads(opened)), now=ctx.now)
        return Enrolled(credentials[0], view={"remaining": len(credentials)})

    def regenerate(self, user, now=None) -> list[str]:
        """Replace the user's set at once and return the new codes (the account page's one-click
        "regenerate"; it shows them once). The caller commits, with its audit event."""
        plain = codes.generate(self.count())
        self.store.replace_set(user, self._items(user, plain), now=now)
        return plain

    # --- login ---------------------------------------------------------------------------

    def _unused(self, user) -> int:
        """How many codes the user has left, from the store's list: within a request that is the
        one read of the user's live credentials the login's pages make anyway, where a COUNT
        was a statement more on every page that offers the codes (and, through the session, a
        transaction: SQLite's write lock taken for a read)."""
        return sum(1 for credential in self.store.list(user) if credential.used_at is None)

    def is_configured_for(self, user):
        return self._unused(user) > 0

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={"remaining": self._unused(user)})

    def verify(self, user, state, response, ctx):
        typed = codes.normalise(response.get("code"))
        if typed is None:
            return Rejected("invalid_code")
        credential = self.store.find(codes.digest(self._pepper(), user.id, typed))
        if credential is None or credential.user_id != user.id:
            return Rejected("invalid_code")
        if credential.used_at is not None or not self.store.consume(credential.id, now=ctx.now):
            # (The login's wording for "replayed" says to wait for the next code: not for these.)
            return Rejected("replayed", message=_l("That recovery code was already used. Use another one."))
        remaining = self.store.count(user, unused=True)
        if remaining == 0:
            # The last one: a user left without codes would be one lost phone away from the
            # help desk. Not a set shown now, after a code that may be the only secret an intruder
            # holds, but at the next login that proves the usual factor (or the security page's).
            directory.owe_recovery_codes(user)
        return Verified(credential.id, self.amr, facts={"remaining": remaining})

    def describe(self, credential):
        return Description(id=credential.id, factor=self.name, label=label_text(self.label),
                           created_at=credential.created_at, last_used_at=credential.last_used_at,
                           facts={"remaining": self.store.count(credential.user_id, unused=True)})
