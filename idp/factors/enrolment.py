"""What the core records when an enrolment finishes, on whichever page it finishes (the security
page: idp.account.service; the login's enrolment step: idp.login.steps.enrol).

Most factors store their credential in `finish_enrolment`. A push device stores itself before:
the phone registers it with the activation code, and the page's last step only finds it there.
Its factor told the user when it did ("A new device was added to your account"): the
`factor.enrolled` recorded after it is marked `announced`, which idp.security_notices does not
mail again. So the user hears of the new device once, and even when nobody finishes the page.
"""
from __future__ import annotations

from idp.factors.registry import current_registry
from idp.factors.types import Enrolled


def addable(factors: list, user) -> list:
    """Those of `factors` the user may enrol now: a factor that keeps one credential per user
    (`allow_multiple = False`) only while the user holds none of it. Offered again, a second
    enrolment stored a second credential that the security page, which shows such a factor as
    one row (registry.describe_credentials), never listed: removing "it" left the other one
    signing the user in."""
    held = current_registry().store.factors_held(user)
    return [f for f in factors if f.allow_multiple or f.name not in held]


def one_too_many(factor, user, stored_id: int) -> bool:
    """Whether the credential `stored_id` just stored is a second one of a factor that keeps one
    (`allow_multiple = False`): two enrolments begun in two tabs before either finished (each
    offered by `addable` while the user held none). Asked with the user's row held."""
    if factor.allow_multiple:
        return False
    return any(credential.id != stored_id and credential.factor == factor.name
               for credential in current_registry().store.list(user))


def credentials_before(user) -> frozenset[int]:
    """The ids of the user's live credentials, read before `finish_enrolment` is called."""
    return frozenset(credential.id for credential in current_registry().store.list(user))


def enrolled_details(factor, outcome: Enrolled, before: frozenset[int], during: str) -> dict:
    """The `factor.enrolled` event's details."""
    details = {"factor": factor.name, "credential_id": outcome.credential.id, "during": during}
    if outcome.credential.id in before:  # stored before this step: announced by its own registration
        details["announced"] = True
    return details
