"""examples/rp, the demo relying party of `make run`, signs a user in and out through a live provider.

The demo data comes from `idp demo seed` (as `make run` does); the relying party runs
as a real server and the test plays the browser across both.
"""
from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from fixtures import servers
from fixtures.oidc import FormBrowser, free_port

RP_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "rp" / "app.py"


def load_rp_module():
    spec = importlib.util.spec_from_file_location("demo_rp_app", RP_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class DemoRp:
    url: str
    demo: dict  # what `idp demo seed --json` printed
    app: object  # the relying party's Flask app, served at `url`
    config: dict  # its configuration, which it reads as it serves


@pytest.fixture
def demo_rp(live_server, idp, tmp_path):
    """The demo relying party, seeded by `idp demo seed` and serving on its own port."""
    port = free_port()
    rp_config = tmp_path / "demo-rp.json"
    seeded = idp("demo", "seed", "--json", "--rp-url", f"http://127.0.0.1:{port}", "--rp-config", str(rp_config),
                 database_url=live_server.database_url, env={"IDP_ISSUER": live_server.url})
    assert seeded.returncode == 0, seeded
    assert json.loads(rp_config.read_text())["issuer"] == live_server.url

    module = load_rp_module()
    config = module.load_config({"RP_CONFIG": str(rp_config), "RP_PORT": str(port)})
    app = module.create_app(config)
    server = make_server("127.0.0.1", port, app, threaded=True)
    servers.serve_in_background(server)
    yield DemoRp(f"http://127.0.0.1:{port}", json.loads(seeded.stdout), app, config)
    servers.stop(server)


def signed_in_at_the_provider(web: FormBrowser, rp: DemoRp) -> str:
    """Starts the RP's sign-in, signs the demo user in at the provider (consenting); returns the
    callback URL the provider sent the browser to, not yet followed."""
    user = next(u for u in rp.demo["users"] if u["role"] == "user")
    web.get(web.http.post(rp.url + "/login", allow_redirects=False).headers["Location"])
    web.login(user["email"], user["password"])
    if web.last_redirect is None:  # the demo client is third-party: consent first
        web.consent("allow")
    assert web.last_redirect and web.last_redirect.startswith(rp.url + "/callback?")
    return web.last_redirect


def csrf_token_on(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def claims_on(html: str) -> dict:
    return {key: json.loads(value.replace("&#34;", '"').replace("&quot;", '"'))
            for key, value in re.findall(r'data-claim="(\w+)">([^<]*)<', html)}


def test_sign_in_shows_the_id_token_claims_then_sign_out(live_server, demo_rp):
    rp_url, demo = demo_rp.url, demo_rp.demo
    user = next(u for u in demo["users"] if u["role"] == "user")
    web = FormBrowser(live_server.url)

    home = web.http.get(rp_url + "/")
    assert 'id="sign-in"' in home.text

    start = web.http.post(rp_url + "/login", allow_redirects=False)
    assert start.status_code == 302 and start.headers["Location"].startswith(live_server.url + "/authorize")
    assert "code_challenge_method=S256" in start.headers["Location"]
    web.get(start.headers["Location"])
    web.login(user["email"], user["password"])
    if web.last_redirect is None:  # the demo client is third-party: consent first
        web.consent("allow")
    assert web.last_redirect and web.last_redirect.startswith(rp_url + "/callback?")

    page = web.http.get(web.last_redirect)
    assert page.status_code == 200 and page.url == rp_url + "/", page.text[:500]
    claims = claims_on(page.text)
    assert claims["email"] == user["email"]
    assert claims["iss"] == live_server.url
    assert claims["amr"] == ["pwd"] and claims["acr"]
    assert claims["sub"] != user["email"]
    assert 'id="userinfo"' in page.text

    # Signing out is a POST from the RP's own page: another site can neither link to it nor post
    # it without the session's token.
    assert web.http.get(rp_url + "/logout", allow_redirects=False).status_code == 405
    assert web.http.post(rp_url + "/logout", data={"csrf_token": "forged"}, allow_redirects=False).status_code == 400
    assert web.http.post(rp_url + "/logout", allow_redirects=False).status_code == 400
    assert 'id="greeting"' in web.http.get(rp_url + "/").text  # still signed in
    leave = web.http.post(rp_url + "/logout", data={"csrf_token": csrf_token_on(page.text)}, allow_redirects=False)
    assert leave.headers["Location"].startswith(live_server.url)
    assert "id_token_hint=" in leave.headers["Location"]
    web.get(leave.headers["Location"])
    if web.last_redirect is None and web.page.forms():  # a confirmation page, if the provider asks
        form = web.page.forms()[0]
        web.submit(form, button=form["buttons"][0] if form["buttons"] else None)
    # The demo asked for front-channel logout: the provider's signed-out page frames it, then
    # goes on to the demo's home page.
    frames, continue_to = frames_of(web.page)
    assert [frame.split("?")[0] for frame in frames] == [rp_url + "/frontchannel-logout"]
    assert continue_to == rp_url + "/"
    assert 'id="sign-in"' in web.http.get(rp_url + "/").text


def frames_of(page) -> tuple[list[str], str]:
    """The frames a signed-out page loads (idp.oidc.frontchannel), and where it goes on to."""
    from html import unescape

    holder = re.search(r'<div id="frontchannel-logout"[^>]*>', page.text).group(0)
    frames = json.loads(unescape(re.search(r'data-frames="([^"]*)"', holder).group(1)))
    return frames, unescape(re.search(r'data-continue="([^"]*)"', holder).group(1))


def test_a_sign_out_at_the_provider_ends_the_demos_session_through_its_frame(live_server, demo_rp):
    """Signed out on the provider's own page: its frame of the demo's front-channel logout page
    (loaded as a frame of another site is, without the demo's cookie) ends the demo's session
    of that `sid`; a frame naming another issuer ends nothing."""
    import requests

    web = FormBrowser(live_server.url)
    web.http.get(signed_in_at_the_provider(web, demo_rp))
    assert 'id="greeting"' in web.http.get(demo_rp.url + "/").text
    confirm = web.get("/logout")
    frames, continue_to = frames_of(web.submit(confirm.forms()[0]))
    [frame] = frames
    assert continue_to == ""
    forged = frame.replace("iss=", "iss=https%3A%2F%2Fother.example%2F&was=")
    assert requests.get(forged, timeout=10).status_code == 200
    assert 'id="greeting"' in web.http.get(demo_rp.url + "/").text        # another issuer's word: nothing
    assert requests.get(frame, timeout=10).status_code == 200                # a cookieless frame
    assert 'id="sign-in"' in web.http.get(demo_rp.url + "/").text


def test_a_denied_consent_is_shown_not_crashed(live_server, demo_rp):
    rp_url, demo = demo_rp.url, demo_rp.demo
    user = next(u for u in demo["users"] if u["role"] == "user")
    web = FormBrowser(live_server.url)
    web.get(web.http.post(rp_url + "/login", allow_redirects=False).headers["Location"])
    web.login(user["email"], user["password"])
    web.consent("deny")
    page = web.http.get(web.last_redirect)
    assert page.status_code == 400 and "access_denied" in page.text


def test_an_id_token_for_another_nonce_is_an_error_page_not_a_sign_in(live_server, demo_rp):
    """A token failing a check (here the nonce: the browser's session expected another) raised
    joserfc's error, which the RP did not catch: a 500."""
    web = FormBrowser(live_server.url)
    callback = signed_in_at_the_provider(web, demo_rp)
    serializer = demo_rp.app.session_interface.get_signing_serializer(demo_rp.app)
    cookie = next(c for c in web.http.cookies if c.name == "demo_rp_session")
    saved = serializer.loads(cookie.value)
    [state] = [value for key, value in saved.items() if key.startswith("_state_idp_")]
    state["data"]["nonce"] = "another nonce"
    cookie.value = serializer.dumps(saved)

    page = web.http.get(callback)
    assert page.status_code == 400 and 'id="error"' in page.text and "nonce" in page.text
    assert 'id="greeting"' not in web.http.get(demo_rp.url + "/").text


def test_an_id_token_for_another_audience_is_an_error_page(live_server, demo_rp):
    """The RP checks that `aud` names it: here it expects another client id than the token's."""
    web = FormBrowser(live_server.url)
    callback = signed_in_at_the_provider(web, demo_rp)
    demo_rp.config["client_id"] = "another-client"
    page = web.http.get(callback)
    assert page.status_code == 400 and "aud" in page.text
    assert 'id="greeting"' not in web.http.get(demo_rp.url + "/").text


def test_a_discovery_document_of_another_issuer_is_refused(live_server, demo_rp):
    demo_rp.config["issuer"] = "https://elsewhere.example"
    page = FormBrowser(live_server.url).http.post(demo_rp.url + "/login", allow_redirects=False)
    assert page.status_code == 502 and "wrong_issuer" in page.text and "Location" not in page.headers


def test_userinfo_about_another_user_is_not_shown(live_server, demo_rp, monkeypatch):
    """OIDC Core 5.3.4: UserInfo whose `sub` is not the ID token's must not be used."""
    provider = demo_rp.app.extensions["demo_rp"]["provider"]
    monkeypatch.setattr(provider, "userinfo", lambda **kwargs: {"sub": "someone-else", "email": "eve@example.com"})
    web = FormBrowser(live_server.url)
    page = web.http.get(signed_in_at_the_provider(web, demo_rp))
    assert page.status_code == 200 and 'id="greeting"' in page.text
    assert 'id="userinfo"' not in page.text and "eve@example.com" not in page.text


DEVICE_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "device" / "signin.py"


@pytest.fixture
def quick_polls_server(migrated_database_url):
    """A provider telling devices to poll every second (the example follows `interval`)."""
    from fixtures.oidc import start_server

    server = start_server(migrated_database_url, {"tokens.device_poll_interval": 1})
    yield server
    server.stop()


def test_the_device_example_signs_in_as_the_person_at_the_device_page(quick_polls_server, idp, tmp_path):
    """examples/device/signin.py, as `make run` prints it: it shows a code, the demo user types
    it at /device and signs in, and the example prints the checked ID token's claims."""
    import subprocess
    import sys

    server = quick_polls_server
    seeded = idp("demo", "seed", "--json", "--rp-config", str(tmp_path / "rp.json"),
                 database_url=server.database_url, env={"IDP_ISSUER": server.url})
    assert seeded.returncode == 0, seeded
    demo = json.loads(seeded.stdout)
    user = next(u for u in demo["users"] if u["role"] == "user")
    device = subprocess.Popen([sys.executable, str(DEVICE_SOURCE), "--issuer", server.url, "--client-id",
                               demo["device_client"]["client_id"], "--scope", "openid email offline_access"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = device.stdout.readline()
        user_code = re.search(r"type the code (\w{4}-\w{4})", first_line).group(1)
        web = FormBrowser(server.url)
        page = web.get(f"/device?user_code={user_code}")
        page = web.submit(web.page.form_with("user_code"))
        web.submit(page.form_with("action"), button=("action", "allow"))
        assert web.login(user["email"], user["password"]).url.endswith("/device/approved")
        out, err = device.communicate(timeout=60)
    finally:
        device.kill()
    assert device.returncode == 0, err
    shown = json.loads(out[out.index("{"):])
    assert shown["id_token_claims"]["email"] == user["email"] and shown["id_token_claims"]["amr"] == ["pwd"]
    assert shown["userinfo"]["email"] == user["email"] and shown["refresh_token"] is True


def test_the_device_example_refuses_a_discovery_document_of_another_issuer(live_server):
    """OIDC Discovery 4.3, as the demo relying party checks it: the document fetched from
    --issuer names that issuer (here the provider's issuer is its localhost name, and the device
    was told 127.0.0.1), or its endpoints and keys are not trusted, and no code is asked for."""
    import subprocess
    import sys

    elsewhere = live_server.url.replace("localhost", "127.0.0.1")
    device = subprocess.run([sys.executable, str(DEVICE_SOURCE), "--issuer", elsewhere, "--client-id", "any"],
                            capture_output=True, text=True, timeout=60)
    assert device.returncode == 1 and device.stdout == ""
    assert device.stderr.strip() == (f"refused: the discovery document names issuer {live_server.url!r}, "
                                     f"not {elsewhere!r}")


def test_the_device_example_shows_no_userinfo_about_someone_else(live_server, monkeypatch, capsys):
    """OIDC Core 5.3.4: UserInfo whose `sub` is not the ID token's is not used."""
    import importlib.util

    from fixtures.oidc import RelyingParty, password_login, seed

    seeded = seed(live_server)
    rp = RelyingParty(live_server.url, seeded.first_party)
    web = FormBrowser(live_server.url)
    password_login(web, rp, seeded.user_email, seeded.password)
    tokens = rp.exchange(web.last_redirect)
    spec = importlib.util.spec_from_file_location("device_signin", DEVICE_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    real_get = module.requests.get

    class Answer:
        def json(self):
            return {"sub": "someone-else", "email": "eve@example.com"}

    metadata = rp.metadata
    monkeypatch.setattr(module.requests, "get", lambda url, **kwargs: Answer() if url == metadata["userinfo_endpoint"]
                        else real_get(url, **kwargs))
    assert module.show(metadata, seeded.first_party["client_id"], tokens) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id_token_claims"]["email"] == seeded.user_email and shown["userinfo"] is None
