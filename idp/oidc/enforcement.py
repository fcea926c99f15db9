"""2FA policy on the token paths that do not pass through the login pipeline (refresh grants)."""
from __future__ import annotations

from idp.models import Token, User


def refresh_allowed(user: User, token: Token) -> bool:
    """A refresh token keeps working for a user who became required only if its login used a second factor."""
    from idp.policy import decide, status

    return decide.refresh_allowed(user, user.org, tuple(token.amr or ()), status.today_utc())
