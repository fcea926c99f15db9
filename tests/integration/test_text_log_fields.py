"""The development console's plain-text log carries what the JSON lines carry.

An authorization request refused with the error page says why only in the log (the page
words it in fixed sentences, idp.oidc.views): a developer running `make run`, whose console
has `server.json_logs = false`, must find the reason there too, on the request's one line.
"""
from __future__ import annotations

import io
import sys

import pytest
import requests

from fixtures.oidc import seed, start_server


@pytest.fixture
def text_logged_server(migrated_database_url):
    from idp.ops import logs

    server = start_server(migrated_database_url, {"server.json_logs": False, "server.log_level": "INFO"})
    stream = io.StringIO()
    handler = logs.configure(level="INFO", json_lines=False, stream=stream)
    server.log = stream
    yield server
    handler.setStream(sys.stderr)
    server.stop()


def test_the_error_pages_reason_is_on_the_text_logs_line(text_logged_server):
    server = text_logged_server
    client = seed(server).third_party
    answer = requests.get(f"{server.url}/authorize", params={
        "client_id": client["client_id"], "response_type": "code", "scope": "openid", "state": "s",
        "redirect_uri": "http://127.0.0.1:9/not-registered"}, timeout=10, allow_redirects=False)
    assert answer.status_code == 400 and "not registered" in answer.text  # the page's fixed words

    [line] = [line for line in server.log.getvalue().splitlines() if "refused with a page" in line]
    assert line.endswith('invalid_request description="Redirect URI http://127.0.0.1:9/not-registered '
                         'is not supported by client."')


def test_fields_keep_a_record_on_one_line_and_its_traceback_below(text_logged_server):
    import logging

    log = logging.getLogger("idp.test")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"fields": {"input": "a\nb", "count": 2}})
    lines = text_logged_server.log.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if "idp.test" in line)
    assert lines[at].endswith('failed input="a\\nb" count=2')
    assert lines[at + 1] == "Traceback (most recent call last):"


def test_a_refused_sign_out_says_why_in_the_log(text_logged_server):
    """The sign-out's error page is as fixed as /authorize's: its reason is in the log too."""
    server = text_logged_server
    client = seed(server).third_party
    for params, reason in (
            ({"id_token_hint": "not-a-jwt"}, 'description="'),
            ({"client_id": client["client_id"], "post_logout_redirect_uri": "http://127.0.0.1:9/elsewhere"},
             "description=\"post_logout_redirect_uri is not one of the client's registered post-logout redirect URIs\""),
            ({"client_id": "unknown", "post_logout_redirect_uri": "http://127.0.0.1:9/elsewhere"},
             'description="post_logout_redirect_uri without a known client (an id_token_hint or a registered '
             'client_id)"')):
        answer = requests.get(f"{server.url}/logout", params=params, timeout=10, allow_redirects=False)
        assert answer.status_code == 400
        line = [line for line in server.log.getvalue().splitlines() if "sign-out request refused" in line][-1]
        assert "refused with a page: invalid_request " + reason in line, line
