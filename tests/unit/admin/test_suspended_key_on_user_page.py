"""A security key suspended as a possible clone still counts as the user's 2FA (the login asks for a
second factor and offers none of it), so the shield stays "active": the admin user page says, on the
key's row, that it is suspended, as the user's own security page does."""
from __future__ import annotations

from idp.db import db, utcnow


def test_a_key_suspended_as_a_clone_is_marked_on_the_admin_user_page(app, world, browser):
    from idp.factors.registry import current_registry

    store = current_registry().store.for_factor("webauthn")
    bob = world["bob"]
    key = store.create(bob.id, "Yubikey", {"suspected_clone_at": utcnow().isoformat(timespec="seconds")},
                       secret=b"k" * 32)
    fine = store.create(bob.id, "Spare", {}, secret=b"s" * 32)
    db.session.commit()
    html = browser(world["admin"]).get(f"/admin/users/{bob.id}").get_data(as_text=True)
    row = html[html.index(f'data-credential-id="{key.id}"'):]
    row = row[:row.index("</tr>")]
    assert "suspended (may be cloned)" in row and "data-credential-status" in row
    spare = html[html.index(f'data-credential-id="{fine.id}"'):]
    assert "data-credential-status" not in spare[:spare.index("</tr>")]
    french = browser(world["admin"]).get(f"/admin/users/{bob.id}", headers={"Accept-Language": "fr"})
    assert "suspendue (peut-être clonée)" in french.get_data(as_text=True)
