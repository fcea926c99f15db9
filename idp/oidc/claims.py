"""Claims about a user: one function for the ID token and the UserInfo endpoint."""
from __future__ import annotations

from dataclasses import dataclass

from authlib.oidc.core import UserInfo
from sqlalchemy import bindparam, select

from idp.db import db
from idp.models import Organization, User


@dataclass(frozen=True)
class OrgName:
    name: str


@dataclass(frozen=True)
class ClaimsUser:
    """What the claims read of a user (a read-only copy, no ORM entity): the token endpoint's
    ID token and UserInfo build theirs from one prebuilt statement."""

    id: int
    public_id: str
    name: str | None
    email: str
    email_verified: bool
    locale: str | None
    org: OrgName

    @classmethod
    def from_row(cls, row) -> "ClaimsUser":
        """From a row carrying `CLAIM_COLUMNS` (as they label them)."""
        return cls(row.user_id, row.public_id, row.user_name, row.email, bool(row.email_verified), row.locale,
                   OrgName(row.org_name))


# The columns a ClaimsUser is built from (with the user's organization joined), for any SELECT.
CLAIM_COLUMNS = (User.id.label("user_id"), User.public_id, User.name.label("user_name"), User.email,
                 User.email_verified, User.locale, Organization.name.label("org_name"))


_ACTIVE_USER = (
    select(*CLAIM_COLUMNS, User.tokens_valid_after)
    .join(Organization, Organization.id == User.org_id)
    .where(User.id == bindparam("user_id"), User.disabled.is_(False))
)
# What `active_user_of` reads of a user beside another table's row that holds its `user_id`
# (the code claimed with its user: idp.oidc.grants.claim_code), labelled apart from that row's columns.
CLAIM_USER_COLUMNS = (*[column for column in CLAIM_COLUMNS if column.key != "user_id"],
                      User.disabled.label("user_disabled"), User.tokens_valid_after)


def active_user(user_id: int | None, *, authenticated_at: int | None = None) -> ClaimsUser | None:
    """The user, unless unknown or disabled, with what the claims need: one statement. With
    `authenticated_at` (a login's auth_time), None too when the user was signed out everywhere
    since (idp.users: a new password, disabling)."""
    if user_id is None:
        return None
    # Outside any transaction: the token endpoint reads the user, then writes its token alone.
    row = db.read_first(_ACTIVE_USER, {"user_id": user_id})
    return None if row is None else _unless_signed_out_since(row, authenticated_at)


def carries_user(row) -> bool:
    """Whether `row` holds its user's `CLAIM_USER_COLUMNS`."""
    return hasattr(row, "user_disabled")


def active_user_of(row, *, authenticated_at: int | None = None) -> ClaimsUser | None:
    """`active_user` from a row that carries its user's `CLAIM_USER_COLUMNS` beside `user_id`:
    None for a user unknown (no such row joined), disabled, or signed out everywhere since
    `authenticated_at`."""
    if row.user_id is None or row.public_id is None or row.user_disabled:
        return None
    return _unless_signed_out_since(row, authenticated_at)


def _unless_signed_out_since(row, authenticated_at: int | None) -> ClaimsUser | None:
    """The user of an enabled user's `row`, unless signed out everywhere since `authenticated_at`."""
    if authenticated_at is not None and not valid_after_sign_out(authenticated_at, row.tokens_valid_after):
        return None
    return ClaimsUser.from_row(row)


def valid_after_sign_out(authenticated_at: int | None, tokens_valid_after: int | None) -> bool:
    """Whether what a login authenticated at `authenticated_at` opened outlives the user's last
    sign-out everywhere (`users.tokens_valid_after`, idp.users.sign_out_everywhere)."""
    return tokens_valid_after is None or (authenticated_at is not None and authenticated_at >= tokens_valid_after)


def generate_user_info(user: User | ClaimsUser, scope: str) -> UserInfo:
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
