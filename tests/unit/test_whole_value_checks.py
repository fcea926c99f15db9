"""Shape checks take the whole value: Python's `$` also matches before a final line feed, so
`re.match(r"^...$")` let "abc\n" pass for "abc" (an e-mail address stored with a line feed in
it, a cookie name, a password-reset token, a push or recovery token id)."""
import pytest

from idp.users import AccountRefused, normalised_email


@pytest.mark.parametrize("raw", ["abc\n@example.com", "abc@example\n.com"])
def test_an_email_address_with_a_line_feed_inside_is_refused(raw):
    with pytest.raises(AccountRefused):
        normalised_email(raw)


def test_surrounding_whitespace_is_still_stripped():
    assert normalised_email("  Alice@Example.com\n") == "alice@example.com"


def test_a_cookie_name_with_a_line_feed_stops_the_start():
    from idp.config_ranges import problems

    settings = {"session.cookie_name": "idp_session\n"}
    assert any("cookie_name" in p for p in problems(settings.get, lambda name: name))


def test_a_reset_token_with_a_line_feed_names_no_link():
    from idp.password_reset import live_link

    assert live_link("A" * 43 + "\n") is None  # refused by its shape, before any look-up


@pytest.mark.parametrize("name", ["__Host-idp", "__secure-idp"])
def test_a_prefixed_cookie_name_with_an_http_issuer_stops_the_start(name):
    """Browsers keep a `__Host-` or `__Secure-` cookie only with `Secure`, which an http issuer's
    cookie lacks: every login would end on the "expired" page."""
    from idp.config_ranges import problems

    settings = {"session.cookie_name": name, "server.issuer": "http://localhost:5000"}
    assert any("cookie_name" in p and "https" in p for p in problems(settings.get, lambda name: name))
    settings["server.issuer"] = "https://id.example.test"
    assert problems(settings.get, lambda name: name) == []
