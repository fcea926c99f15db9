"""The admin's search by name, over HTTP against a live server: a name is found in any case, its
non-ASCII letters too (SQLite's own lower() changes ASCII letters only: "Émile" stored was found
by "EMILE" and never by "Émile" as typed, nor by "émile"), on the users list and the audit log."""
from __future__ import annotations

import re

from fixtures.oidc import FormBrowser, password_login

NAMES = {"emile@acme.test": "Émile Zola", "ozil@acme.test": "Özil Ünal", "anders@acme.test": "ÅSA ÆRØ"}


def test_a_name_is_found_whatever_the_case_of_its_letters(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import User
    from idp.security.tokens import random_token
    from idp import audit

    with live_server.context():
        for email, name in NAMES.items():
            user = User(public_id=random_token(16), org_id=seeded.org_id, email=email, name=name, role="user",
                        password_hash="x")
            db.session.add(user)
            db.session.flush()
            audit.record("user.created", org_id=seeded.org_id, actor_id=None, actor="cli", subject_id=user.id,
                         details={})
        db.session.commit()
    admin = FormBrowser(live_server.url)
    password_login(admin, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)

    for search, email in [("Émile", "emile@acme.test"), ("émile", "emile@acme.test"), ("ÉMILE", "emile@acme.test"),
                          ("émile zola", "emile@acme.test"), ("ünal", "ozil@acme.test"), ("ÖZIL", "ozil@acme.test"),
                          ("åsa ærø", "anders@acme.test")]:
        page = admin.get(f"/admin/users?q={search}")
        assert page.status == 200
        assert re.findall(r'<td data-label="E-mail"><bdi>([^<]+)</bdi>', page.text) == [email], search
        page = admin.get(f"/admin/audit?user={search}")
        assert page.status == 200 and email.replace("@", "<wbr>@") in page.text, search
    assert "No user matches." in admin.get("/admin/users?q=Élodie").text
