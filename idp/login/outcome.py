"""What a finished login proved: `amr` and `acr` computed from the steps done (RFC 8176 values)."""
from __future__ import annotations

from dataclasses import dataclass

from idp.policy.decide import acr_for


@dataclass(frozen=True)
class LoginOutcome:
    """Handed to the code grant, which stores it on the authorization code."""

    auth_time: int
    amr: tuple[str, ...]
    acr: str
    sid: str | None = None
    # The second-factor credentials it proved (ids), kept on the code and its tokens.
    credential_ids: tuple[int, ...] = ()


def compute_amr(steps_done: list[dict]) -> list[str]:
    """`pwd` + each factor's values, in order, without repeats; `mfa` once two distinct methods were used."""
    amr: list[str] = []
    methods = set()
    for step in steps_done:
        if step.get("amr"):
            methods.add(step.get("factor") or step.get("method"))
        for value in step.get("amr", []):
            if value not in amr:
                amr.append(value)
    if len(methods) >= 2 and "mfa" not in amr:
        amr.append("mfa")
    return amr


def outcome_from_steps(steps_done: list[dict], auth_time: int, sid: str | None = None) -> LoginOutcome:
    amr = compute_amr(steps_done)
    return LoginOutcome(auth_time=auth_time, amr=tuple(amr), acr=acr_for(amr), sid=sid)
