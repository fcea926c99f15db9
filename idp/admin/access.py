"""Who may use the admin pages: the signed-in admins of an organization, for that organization only.

One decorator, so that no view can forget a check:

* nobody signed in, or a session that no longer meets the 2FA policy
                            -> sign in (again), then back here (302);
* signed in, not an admin   -> 403;
* an admin                  -> the view runs with `g.admin` and `g.org` (the admin's own
                               organization); every lookup goes through `user_in_org`,
                               so another organization's user is a 404, the same answer
                               as a user that does not exist.
"""
from __future__ import annotations

import functools

from flask import abort, g
from sqlalchemy import select

from idp.db import MAX_ROW_ID, db
from idp.login import session as login_session
from idp.models import Organization, User



def org_admin_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user, sign_in = login_session.user_or_sign_in()
        if sign_in is not None:
            return sign_in
        if not user.is_admin:
            abort(403)
        g.admin = user
        g.org = db.session.get(Organization, user.org_id)
        return view(*args, **kwargs)

    return wrapper


def user_in_org(user_id: int) -> User:
    """The user with this id in the admin's organization, else 404."""
    if not 0 < user_id <= MAX_ROW_ID:
        abort(404)
    user = db.session.scalar(select(User).where(User.id == user_id, User.org_id == g.org.id))
    if user is None:
        abort(404)
    return user
