"""A client's registered URIs (idp.clients.check_redirect_uri): text that a database stores and a
terminal prints as it is, of a bounded length. The `idp` command refuses a command line that is not
UTF-8 before a URI gets here (test_cli.py); this check holds for any other caller too."""
from __future__ import annotations

import pytest

from idp.clients import MAX_URI_LENGTH, ClientRefused, check_redirect_uri


@pytest.mark.parametrize("uri, message", [
    ("https://a.example/\udcff", "not UTF-8 text"),            # a lone surrogate: bytes that were not UTF-8
    ("https://a.example/\x00", "not UTF-8 text"),             # NUL: PostgreSQL refuses it
    ("https://a.example/\x01", "control characters"),
    ("https://a.example/\x1b[31m", "control characters"),     # ESC: a terminal escape sequence
    ("https://a.example/\x85", "spaces"),                     # C1 NEL is white space
    ("https://a.example/\x9b31m", "control characters"),      # C1 CSI
    ("https://a.example/\u202e", "control characters"),       # a bidirectional override (Cf)
    ("https://a.example/" + "x" * MAX_URI_LENGTH, f"longer than {MAX_URI_LENGTH} characters"),
])
def test_uris_that_are_not_printable_text_or_too_long_are_refused(uri, message):
    with pytest.raises(ClientRefused, match=message) as refused:
        check_redirect_uri(uri)
    assert len(str(refused.value)) < 200


def test_a_uri_of_the_longest_length_is_accepted():
    uri = "https://a.example/" + "x" * (MAX_URI_LENGTH - len("https://a.example/"))
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize("uri", ["com.example.app:/cb\u202e", "com.example.app:/cb\x1b[31m", "com.example.app:/\x00"])
def test_a_private_use_uri_is_printable_text_too(uri):
    with pytest.raises(ClientRefused, match="control characters|UTF-8"):
        check_redirect_uri(uri, public=True)


def test_private_use_schemes_only_where_a_public_client_registers_them():
    """A public client's redirect (and post-logout) URIs (public=True); never a confidential
    client's (public=False), nor the URIs only a server answers (public=None: back-channel and
    front-channel logout, jwks_uri)."""
    from idp.oidc.private_use_schemes import is_private_use

    assert check_redirect_uri("com.example.app:/cb", public=True) == "com.example.app:/cb"
    for public in (False, None):
        with pytest.raises(ClientRefused, match="http"):
            check_redirect_uri("com.example.app:/cb", public=public)
    assert is_private_use("com.example.app:/cb") and not is_private_use("https://a.example/cb")
    assert not is_private_use("HTTP://127.0.0.1/cb") and not is_private_use(None)
