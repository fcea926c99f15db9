"""What a plugin may ask of the directory about a user (idp.factors.directory)."""
from dataclasses import replace

from sqlalchemy import update

from idp.db import db
from idp.factors import directory
from idp.models import User


def test_hold_enabled_says_whether_the_held_user_may_still_get_a_new_way_in(factor_app, factor_user):
    assert directory.hold_enabled(factor_user) is True
    assert db.in_transaction()  # the user's row is held until the caller commits or rolls back
    db.session.commit()
    db.session.execute(update(User).where(User.id == factor_user.id).values(disabled=True))
    db.session.commit()
    assert directory.hold_enabled(factor_user) is False
    db.session.rollback()
    assert directory.hold_enabled(replace(factor_user, id=factor_user.id + 10_000)) is False  # no such user
    db.session.rollback()
