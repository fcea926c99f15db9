"""Claims about a user: one function for the ID token and the UserInfo endpoint."""
from __future__ import annotations

from authlib.oidc.core import UserInfo

from idp.models import User


def generate_user_info(user: User, scope: str) -> UserInfo:
    """Opaque, stable `sub`; profile and e-mail claims only for the scopes granted."""
    scopes = set((scope or "").split())
    info = {"sub": user.public_id}
    if "profile" in scopes:
        info["name"] = user.name or user.email
        if user.locale:
            info["locale"] = user.locale
        info["org"] = user.org.name  # the user's organization (a private claim)
    if "email" in scopes:
        info["email"] = user.email
        info["email_verified"] = bool(user.email_verified)
    return UserInfo(info)
