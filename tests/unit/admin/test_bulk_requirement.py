"""The users list's bulk change of 2FA ("For the selected users: require | follow the organization |
waive"), over HTTP: members of the admin's organization only, in one transaction, each user changed
as their own page's save changes them (one `policy.user_requirement_changed` each, plus one
`policy.bulk_change`); a user another admin changed since the page was shown is skipped, not
overwritten; any id the page never offered refuses the whole request, which changes nothing."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select, update

from idp.db import db, utcnow
from idp.models import AuditEvent, User, UserSession
from idp.policy import settings


def _events(event=None):
    query = select(AuditEvent).order_by(AuditEvent.id)
    if event:
        query = query.where(AuditEvent.event == event)
    return db.session.scalars(query).all()


def _count():
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def _boxes(html):
    """{user id: the checkbox's value} of the list's selectable rows."""
    return {int(v.split(".")[0]): v for v in re.findall(r'<input type="checkbox" name="user" id="select-\d+" value="([^"]+)"',
                                                        html)}


def _user(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id)


def test_only_members_have_a_checkbox_labelled_with_their_name(app, world, browser):
    html = browser(world["admin"]).get("/admin/users").get_data(as_text=True)
    boxes = _boxes(html)
    assert set(boxes) == {world["alice"].id, world["bob"].id, world["carol"].id}  # not the admin's own row
    assert f'<label for="select-{world["alice"].id}" class="sr-only">Select Alice (alice@acme.test)</label>' in html
    assert boxes[world["alice"].id] == f'{world["alice"].id}.{settings.requirement_version(world["alice"])}'
    assert '<form method="post" action="/admin/users?' in html and 'name="mode"' in html


def test_bulk_require_then_follow_one_event_per_user_and_a_summary(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users?q=acme").get_data(as_text=True))
    alice, bob, carol = world["alice"].id, world["bob"].id, world["carol"].id
    response = client.post("/admin/users?q=acme", data={"mode": "required", "user": [boxes[alice], boxes[bob],
                                                                                       boxes[carol]]})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/users?q=acme")
    assert [_user(i).mfa_setting for i in (alice, bob, carol)] == ["required"] * 3
    assert _user(alice).required_since is not None
    changes = _events("policy.user_requirement_changed")
    assert sorted(e.subject_id for e in changes) == [alice, bob]  # carol was required already
    assert all(e.actor_id == world["admin"].id and e.org_id == world["acme"].id for e in changes)
    [summary] = _events("policy.bulk_change")
    assert summary.details == {"mode": "required", "until": None, "reason": None, "selected": 3, "changed": 2,
                               "unchanged": 1, "skipped": []}
    page = client.get("/admin/users?q=acme").get_data(as_text=True)
    assert "2 users changed. 1 already had this setting." in page

    boxes = _boxes(page)
    client.post("/admin/users", data={"mode": "follow", "user": [boxes[alice], boxes[carol]]})
    assert [_user(i).mfa_setting for i in (alice, bob, carol)] == ["follow", "required", "follow"]
    assert _user(alice).required_since is None
    assert len(_events("policy.user_requirement_changed")) == 4 and len(_events("policy.bulk_change")) == 2


def test_bulk_waiver_with_an_end_date_and_a_reason(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    until = (utcnow() + timedelta(days=30)).date()
    response = client.post("/admin/users", data={"mode": "exempt", "exempt_until": until.isoformat(),
                                                 "exempt_reason": "  contractors,   Q3 ",
                                                 "user": [boxes[world["alice"].id], boxes[world["carol"].id]]})
    assert response.status_code == 302
    for key in ("alice", "carol"):
        user = _user(world[key].id)
        assert (user.mfa_setting, user.exempt_until, user.exempt_reason) == ("exempt", until, "contractors, Q3")
    change = [e for e in _events("policy.user_requirement_changed") if e.subject_id == world["carol"].id][0]
    assert change.details["after"] == {"mode": "exempt", "until": until.isoformat(), "reason": "contractors, Q3"}
    assert change.details["before"]["mode"] == "required" and change.details["required"] is False
    [summary] = _events("policy.bulk_change")
    assert (summary.details["until"], summary.details["reason"]) == (until.isoformat(), "contractors, Q3")


def test_bad_waivers_are_400_and_change_nothing(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    alice = boxes[world["alice"].id]
    past = (utcnow() - timedelta(days=2)).date().isoformat()
    for data, words in (
        ({"mode": "exempt", "exempt_until": past, "user": alice}, "is in the past"),
        ({"mode": "exempt", "exempt_reason": "x" * 501, "user": alice}, "500"),
        ({"mode": "exempt", "exempt_reason": "a\u202eb", "user": alice}, "control characters"),
        ({"mode": "required", "exempt_reason": "why", "user": alice}, "only apply to waiving"),
        ({"mode": "required"}, "Select at least one user"),
        ({"user": alice}, "Choose what to do"),
        ({"mode": "nonsense", "user": alice}, "Not a valid choice"),
    ):
        response = client.post("/admin/users", data=data)
        assert response.status_code == 400, data
        html = response.get_data(as_text=True)
        assert words in html, (data, html)
        assert "<title>Error:" in html
    assert _user(world["alice"].id).mfa_setting == "follow" and _count() == 0
    # The selection is shown again as it was posted.
    html = client.post("/admin/users", data={"mode": "required", "exempt_reason": "why", "user": alice}
                       ).get_data(as_text=True)
    assert f'value="{alice}" checked' in html


def test_a_user_changed_meanwhile_is_skipped_not_overwritten(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    # Another admin waives 2FA for bob (an agreed exception) while this page is open.
    settings.set_user_requirement(world["bob"].id, settings.EXEMPT, None, "travelling", settings.Actor.cli())
    before = _count()
    response = client.post("/admin/users", data={"mode": "required", "user": [boxes[world["alice"].id],
                                                                             boxes[world["bob"].id]]})
    assert response.status_code == 302
    assert _user(world["alice"].id).mfa_setting == "required"
    bob = _user(world["bob"].id)
    assert (bob.mfa_setting, bob.exempt_reason) == ("exempt", "travelling")
    assert [e.subject_id for e in _events("policy.user_requirement_changed")][-1] == world["alice"].id
    assert _count() == before + 2
    assert _events("policy.bulk_change")[0].details["skipped"] == [world["bob"].id]
    page = client.get("/admin/users").get_data(as_text=True)
    assert "1 user changed." in page
    assert "1 skipped because another admin changed their setting meanwhile: bob@acme.test." in page
    # All skipped: nothing changed, no event; the page says who.
    settings.set_user_requirement(world["alice"].id, settings.EXEMPT, None, None, settings.Actor.cli())
    before = _count()
    client.post("/admin/users", data={"mode": "required", "user": [boxes[world["alice"].id]]})
    assert _user(world["alice"].id).mfa_setting == "exempt" and _count() == before
    assert "0 users changed." in client.get("/admin/users").get_data(as_text=True)


def test_ids_the_page_never_offered_refuse_the_whole_request(app, world, browser, make_user):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    alice = boxes[world["alice"].id]

    def box(user):
        return f"{user.id}.{settings.requirement_version(user)}"

    for others in ([box(world["stranger"])], [box(world["other_admin"])], [box(world["admin"])],
                   ["99999999." + "0" * 16]):
        response = client.post("/admin/users", data={"mode": "exempt", "user": [alice, *others]})
        assert response.status_code == 400, others
        assert "Not saved" in response.get_data(as_text=True)
    peer = make_user(world["acme"], "peer@acme.test", role="admin")
    response = client.post("/admin/users", data={"mode": "required", "user": [alice, box(peer)]})
    assert response.status_code == 400 and "administrator" in response.get_data(as_text=True)
    for malformed in (["abc"], [str(world["bob"].id)], [f"{world['bob'].id}.xyz"], [alice, alice],
                      [f"{world['bob'].id}.{'A' * 16}"], ["-1." + "0" * 16], ["0." + "0" * 16],
                      [f"{2**63}." + "0" * 16]):
        response = client.post("/admin/users", data={"mode": "required", "user": [alice, *malformed]})
        assert response.status_code == 400, malformed
    assert _user(world["alice"].id).mfa_setting == "follow" and _count() == 0
    assert _user(world["stranger"].id).mfa_setting == "follow"


def test_a_member_promoted_meanwhile_refuses_the_request(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    db.session.execute(update(User).where(User.id == world["bob"].id).values(role="admin"))
    db.session.commit()
    response = client.post("/admin/users", data={"mode": "exempt", "user": [boxes[world["alice"].id],
                                                                           boxes[world["bob"].id]]})
    assert response.status_code == 400
    assert _user(world["alice"].id).mfa_setting == "follow" and _user(world["bob"].id).mfa_setting == "follow"
    assert _count() == 0


def test_at_most_a_page_of_users_per_request(app, world, browser, monkeypatch):
    settings_ = app.extensions["idp.settings"]

    class PageOfTwo:
        def __getattr__(self, name):
            return getattr(settings_, name)

        def get(self, dotted, default=None):
            return 2 if dotted == "admin.page_size" else settings_.get(dotted, default)

    monkeypatch.setitem(app.extensions, "idp.settings", PageOfTwo())
    client = browser(world["admin"])
    boxes = {}
    boxes.update(_boxes(client.get("/admin/users").get_data(as_text=True)))
    boxes.update(_boxes(client.get(f"/admin/users?after={world['alice'].id}").get_data(as_text=True)))
    assert len(boxes) == 3
    response = client.post("/admin/users", data={"mode": "required", "user": list(boxes.values())})
    assert response.status_code == 400 and _count() == 0
    response = client.post("/admin/users", data={"mode": "required", "user": list(boxes.values())[:2]})
    assert response.status_code == 302 and len(_events("policy.user_requirement_changed")) == 2


def test_the_bulk_form_needs_a_csrf_token(app, world, browser):
    app.config["WTF_CSRF_ENABLED"] = True
    client = browser(world["admin"])
    html = client.get("/admin/users").get_data(as_text=True)
    boxes = _boxes(html)
    data = {"mode": "required", "user": [boxes[world["alice"].id]]}
    assert client.post("/admin/users", data=data).status_code == 400
    assert client.post("/admin/users", data={**data, "csrf_token": "forged"}).status_code == 400
    assert _user(world["alice"].id).mfa_setting == "follow" and _count() == 0
    token = re.search(r'id="bulk"[^>]*>\s*<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    assert client.post("/admin/users", data={**data, "csrf_token": token}).status_code == 302
    assert _user(world["alice"].id).mfa_setting == "required"


def test_a_stale_admin_session_signs_in_again_first(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    db.session.execute(update(UserSession).where(UserSession.user_id == world["admin"].id)
                       .values(login_started_at=utcnow() - timedelta(days=1)))
    db.session.commit()
    response = client.post("/admin/users", data={"mode": "exempt", "user": [boxes[world["alice"].id]]})
    assert response.status_code == 302 and "/login/" in response.headers["Location"]
    assert _user(world["alice"].id).mfa_setting == "follow" and _count() == 0


def test_a_non_admin_cannot_post_it(app, world, browser):
    alice = world["alice"]
    response = browser(alice).post("/admin/users", data={"mode": "exempt",
                                                         "user": [f"{alice.id}.{settings.requirement_version(alice)}"]})
    assert response.status_code == 403 and _user(alice.id).mfa_setting == "follow"


def test_the_way_back_keeps_the_lists_filters_and_page(app, world, browser):
    client = browser(world["admin"])
    url = f"/admin/users?status=not_active&after={world['admin'].id}"
    boxes = _boxes(client.get(url).get_data(as_text=True))
    response = client.post(url, data={"mode": "required", "user": [boxes[world["alice"].id]]})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(url)
    assert client.post("/admin/users?after=abc", data={"mode": "required",
                                                        "user": [boxes[world["alice"].id]]}).status_code == 400
    assert client.post("/admin/users?status=nope", data={"mode": "required",
                                                          "user": [boxes[world["alice"].id]]}).status_code == 400
    assert len(_events("policy.user_requirement_changed")) == 1


def test_the_page_in_french(app, world, browser):
    client = browser(world["admin"])
    boxes = _boxes(client.get("/admin/users").get_data(as_text=True))
    settings.set_user_requirement(world["bob"].id, settings.EXEMPT, None, None, settings.Actor.cli())
    client.post("/admin/users", data={"mode": "required", "user": [boxes[world["alice"].id], boxes[world["bob"].id]]},
                headers={"Accept-Language": "fr"})
    page = client.get("/admin/users", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Pour les utilisateurs sélectionnés" in page and "Sélectionner Alice (alice@acme.test)" in page
    assert "1 utilisateur modifié." in page
    assert "1 ignoré, car un autre administrateur a modifié son réglage entre-temps : bob@acme.test." in page
