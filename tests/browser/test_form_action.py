"""CSP form-action in a real browser: Chromium checks every redirect after a form's POST against
it, so the login's last POST and the logout confirmation must name the client's origin (the
clients' callbacks run at http://127.0.0.1, the provider at http://localhost: two origins)."""
from __future__ import annotations

from fixtures.oidc import callback_base, id_token_from_another_browser


def test_a_password_login_posts_its_way_to_the_client(seeded, page, rp_factory):
    rp = rp_factory(seeded.first_party)
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "form-action" in message.text else None)
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    page.wait_for_url(f"{callback_base()}/**")
    assert "code=" in page.url and not violations


def test_the_logout_confirmation_posts_its_way_to_the_client(seeded, page, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    someone_elses = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    page.wait_for_url(f"{callback_base()}/**")
    back = rp.client["post_logout_redirect_uri"]
    page.goto(f"{rp.metadata['end_session_endpoint']}?id_token_hint={someone_elses}"
              f"&post_logout_redirect_uri={back}&state=bye")
    page.click("button.primary")
    page.wait_for_url(f"{back}?state=bye")
