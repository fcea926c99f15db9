"""The bench's login generator (bench/login_flow.py over bench/lean_http.py) against a live server.

The generator reads forms with regular expressions and speaks HTTP on a bare socket, to spend
as little as possible of the cores it shares with the server it measures. These tests hold it to
what a browser does: a whole login through a consent page ends with tokens, and every form it
read from the provider's pages is the form html.parser reads there.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fixtures.oidc import _Forms  # noqa: E402
from lean_http import Browser  # noqa: E402
from login_flow import Client, Endpoints, login_once, parse_forms  # noqa: E402


class RecordingBrowser(Browser):
    """The generator's browser, keeping every HTML page it received."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: list[str] = []

    def request(self, method, url, **kwargs):
        response = super().request(method, url, **kwargs)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.pages.append(response.text)
        return response


def _as_html_parser_reads_it(page: str) -> list[dict]:
    reference = _Forms()
    reference.feed(page)
    return [{"action": form["action"], "method": form["method"], "inputs": form["fields"],
             "buttons": form["buttons"]} for form in reference.forms]


def _as_the_generator_reads_it(page: str) -> list[dict]:
    return [{**form, "inputs": dict(form["inputs"])} for form in parse_forms(page)]


def test_the_generator_logs_in_through_consent_and_reads_forms_as_html_parser_does(live_server, seeded):
    client = seeded.third_party
    browser = RecordingBrowser()
    tokens = login_once(Endpoints.discover(live_server.url),
                        Client(client["client_id"], client["client_secret"], client["redirect_uri"]),
                        seeded.user_email, seeded.password, browser)

    assert tokens["access_token"] and tokens["id_token"]
    assert len(browser.pages) >= 2  # the password form and the consent form
    for page in browser.pages:
        assert _as_the_generator_reads_it(page) == _as_html_parser_reads_it(page)


def test_the_form_reader_handles_quoting_entities_and_unchecked_boxes():
    page = """<FORM method='POST' action="/x?a=1&amp;b=2"><input type=hidden name=t value="a&quot;b">
      <input type="checkbox" name="off" value="1"><input type="checkbox" name="on" value="1" checked>
      <input name="empty" value=""><button name="action" value="allow">Allow</button>
      <input type="submit" name="go" value='Go'></form><form><input name="q"></form>"""

    assert _as_the_generator_reads_it(page) == _as_html_parser_reads_it(page)
    assert parse_forms(page)[0]["action"] == "/x?a=1&b=2"
