"""Every standing a user can be in shows one shield, and is counted once, in the bucket whose
users-list filter lists it: Account > Security's counts, the users list's status and exempt
filters and each row's shield agree (disabled accounts: a shield, in no count)."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update

from idp.db import db, utcnow
from idp.models import Organization


def test_every_combination_has_one_shield_and_one_bucket(app, world, browser, make_user):
    acme = world["acme"]
    today = utcnow().date()
    db.session.execute(update(Organization).where(Organization.id == acme.id)
                       .values(require_2fa=True, allowed_factors=["webauthn"], grace_days=7))
    db.session.commit()
    expected = {
        # (already in `world`) admin (factor), alice (none), bob (factor), carol (required, none)
        "admin": "active_required", "alice": "required_not_set_up", "bob": "active_required",
        "carol": "required_not_set_up",
        "disabled": ("active_required", make_user(acme, "d@acme.test", disabled=True, second_factor_count=1)),
        "exempt_past": ("active_required", make_user(acme, "ep@acme.test", mfa_setting="exempt",
                                                     exempt_until=today - timedelta(days=1), second_factor_count=1)),
        "exempt_today": ("not_active", make_user(acme, "et@acme.test", mfa_setting="exempt", exempt_until=today,
                                                 second_factor_count=1)),
        "exempt_forever": ("not_active", make_user(acme, "ef@acme.test", mfa_setting="exempt")),
        "grace_running": ("required_not_set_up", make_user(acme, "gr@acme.test", required_since=utcnow())),
        "grace_over": ("required_not_set_up", make_user(acme, "go@acme.test",
                                                        required_since=utcnow() - timedelta(days=30))),
        "push_suspended": ("active_required", make_user(acme, "ps@acme.test", second_factor_count=1,
                                                        push_suspended_at=utcnow())),
        # a factor of a kind the organization no longer allows still has 2FA (docs/policy.md)
        "disallowed_kind": ("active_required", make_user(acme, "dk@acme.test", second_factor_count=1)),
    }
    ids = {}
    for key, value in list(expected.items()):
        if isinstance(value, tuple):
            expected[key], user = value
        else:
            user = world[key]
        ids[str(user.id)] = key
    client = browser(world["admin"])
    listed = client.get("/admin/users").get_data(as_text=True)
    shields = dict(re.findall(r'data-user-id="(\d+)">.*?data-status="([a-z_]+)"', listed, re.S))
    assert {ids[i]: s for i, s in shields.items() if i in ids} == expected

    security = client.get("/admin/security").get_data(as_text=True)
    counts = {s: int(n) for s, n in re.findall(
        r'<a href="/admin/users\?status=([a-z_]+)" class="count"[^>]*>(\d+)</a>', security)}
    enabled = {k: v for k, v in expected.items() if k != "disabled"}
    for status, count in counts.items():
        page = client.get(f"/admin/users?status={status}").get_data(as_text=True)
        in_filter = {ids[i] for i in re.findall(r'data-user-id="(\d+)"', page) if i in ids}
        assert in_filter == {k for k, v in enabled.items() if v == status}, status
        assert count == len(in_filter), status
    assert sum(counts.values()) == len(enabled)
    exempt_page = client.get("/admin/users?exempt=1").get_data(as_text=True)
    assert {ids[i] for i in re.findall(r'data-user-id="(\d+)"', exempt_page)} == {"exempt_today", "exempt_forever"}
    assert 'data-exempt-count="2"' in security
