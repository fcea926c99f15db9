"""The access log of a live provider: no login handle in it, and the shape bench/run.py reads kept.

A login's URL (`/login/<handle>`) carries a bearer-like handle; the access lines write a
pseudonym in its place (idp.ops.paths), the same for every request of that login, so that the
benchmark can still tell a login's password POST from its code POSTs.
"""
from __future__ import annotations

import io
import json
import re
import sys
import time
from pathlib import Path

import pyotp
import pytest
import requests

from fixtures.oidc import FormBrowser, start_server
from fixtures.totp import enrol_totp_during_login

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from run import login_breakdown  # noqa: E402  (bench/run.py: how the benchmark reads access lines)


@pytest.fixture
def live_server(migrated_database_url):
    """The live provider with its JSON access lines at INFO, written to a buffer."""
    from idp.ops import logs

    server = start_server(migrated_database_url, {"server.json_logs": True, "server.log_level": "INFO"})
    stream = io.StringIO()
    handler = logs.configure(level="INFO", json_lines=True, stream=stream)
    server.log = stream
    yield server
    handler.setStream(sys.stderr)
    server.stop()


def own_lines(server) -> list[dict]:
    """The provider's log lines; not the request lines of werkzeug's test server, which
    production does not run (`idp serve` silences them, gunicorn's are off by default)."""
    lines = (json.loads(line) for line in server.log.getvalue().splitlines() if line.startswith("{"))
    return [line for line in lines if line["logger"] != "werkzeug"]


def access_lines(server) -> list[dict]:
    return [line for line in own_lines(server) if line["logger"] == "idp.access"]


def handle_of(url: str) -> str:
    return re.search(r"/login/([^/?#]+)", url).group(1)


def test_login_handles_stay_out_of_the_logs_and_the_metrics(live_server, seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    handle = handle_of(page.url)
    page = browser.submit(page.form_with("code"), {"code": "000000"})  # a wrong code: the form again
    assert page.status == 401
    # A mistaken request names the handle too: a GET of the POST-only cancel URL (405).
    assert requests.get(f"{live_server.url}/login/{handle}/cancel", timeout=10).status_code == 405
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    assert browser.last_redirect and "code=" in browser.last_redirect

    lines = access_lines(live_server)
    assert handle not in json.dumps(own_lines(live_server))
    posts = [line["path"] for line in lines if line["method"] == "POST" and line["path"].startswith("/login/")]
    assert posts and all(re.fullmatch(r"/login/[A-Za-z0-9_-]{22}(/factor/totp)?", path) for path in posts)
    # The benchmark's reading still works: one login's POSTs share a path, the first is the password's.
    table = login_breakdown(lines)
    assert {"POST /login/<id> 302 (password)", "POST /login/<id> 401 (code)", "POST /login/<id> 302 (code)"} <= set(table)

    metrics = requests.get(f"{live_server.url}/metrics", timeout=10).text
    assert handle not in metrics and 'endpoint="/login/<handle>"' in metrics
