"""Adding accounts: otpauth:// parsing, the URI dispatch table, QR images."""

import re

import pytest
import segno

from authenticator.accounts import TOTP
from authenticator.errors import AuthenticatorError
from authenticator.intake import URI_HANDLERS, account_from_input, account_from_uri
from authenticator.otpauth import parse_totp_uri


def test_all_parameters_are_read():
    account = parse_totp_uri(
        "otpauth://totp/ACME%20Co:alice%40example.com?secret=jbsw y3dp ehpk3pxp&issuer=ACME%20Co"
        "&algorithm=sha512&digits=8&period=60"
    )
    assert (account.type, account.issuer, account.name) == (TOTP, "ACME Co", "alice@example.com")
    assert account.totp.secret == "JBSWY3DPEHPK3PXP"
    assert (account.totp.algorithm, account.totp.digits, account.totp.period) == ("SHA512", 8, 60)


def test_defaults_and_label_without_issuer():
    account = parse_totp_uri("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP")
    assert (account.issuer, account.name) == ("", "bob")
    assert (account.totp.algorithm, account.totp.digits, account.totp.period) == ("SHA1", 6, 30)


def test_issuer_from_label_when_no_parameter():
    assert parse_totp_uri("otpauth://totp/Example:carol?secret=JBSWY3DPEHPK3PXP").issuer == "Example"


@pytest.mark.parametrize("uri,message", [
    ("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP&counter=1", "hotp"),
    ("otpauth://totp/x", "no secret"),
    ("otpauth://totp/x?secret=not*base32", "base32"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=7", "digits"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=MD5", "algorithm"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=0", "period"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&secret=AAAA", "repeats"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&SECRET=AAAA", "repeats"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&Digits=8&digits=6", "repeats"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=%C2%B2", "digits"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=%C2%B2", "period"),
    ("otpauth://totp/?secret=JBSWY3DPEHPK3PXP", "account name"),
    ("otpauth://steam/x?secret=JBSWY3DPEHPK3PXP", "unsupported otpauth"),
    ("https://example.com/enrol", "unsupported URI scheme 'https'"),
])
def test_bad_uris_are_refused_with_a_reason(uri, message):
    with pytest.raises(AuthenticatorError, match=re.escape(message)):
        account_from_uri(uri)


@pytest.mark.parametrize("uri, message", [
    # %FF was stored as U+FFFD: a label the QR code never held
    ("otpauth://totp/Ex:b%FFob?secret=JBSWY3DPEHPK3PXP", "the otpauth label is not UTF-8 text"),
    ("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP&issuer=E%FFx", "parameter that is not UTF-8 text"),
    ("idp-push://activate?v=1&issuer=https://x.example&endpoint=https://x.example/factors/push/v1&code=c&user=%FF",
     "parameter that is not UTF-8 text"),
    # a 100,000-character label was stored, backed up and printed
    ("otpauth://totp/Ex:" + "a" * 100_000 + "?secret=JBSWY3DPEHPK3PXP",
     "the otpauth account name is longer than 256 characters (100000)"),
    ("otpauth://totp/" + "a" * 257 + ":bob?secret=JBSWY3DPEHPK3PXP", "the otpauth issuer is longer than 256"),
    ("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP&issuer=" + "a" * 257, "the otpauth issuer is longer than 256"),
    ("idp-push://activate?v=1&issuer=https://x.example&endpoint=https://x.example/factors/push/v1&code=c&user="
     + "a" * 257, "the user in the push activation URI is longer than 256"),
])
def test_labels_that_are_too_long_or_not_utf8_are_refused(uri, message):
    with pytest.raises(AuthenticatorError, match=re.escape(message)):
        account_from_uri(uri)


def test_labels_of_the_longest_length_are_taken():
    account = parse_totp_uri("otpauth://totp/" + "é" * 256 + ":" + "b" * 256 + "?secret=JBSWY3DPEHPK3PXP")
    assert (account.issuer, account.name) == ("é" * 256, "b" * 256)


def test_dispatch_table_takes_new_entries(monkeypatch):
    seen = []
    monkeypatch.setitem(URI_HANDLERS, ("idp-push", "activate"), lambda uri: seen.append(uri) or "handled")
    assert account_from_uri("idp-push://activate?code=abc") == "handled"
    assert seen == ["idp-push://activate?code=abc"]


def test_qr_image_is_decoded(tmp_path):
    image = tmp_path / "qr.png"
    segno.make("otpauth://totp/ACME:dave?secret=JBSWY3DPEHPK3PXP", error="m").save(str(image), scale=6)
    account = account_from_input(str(image))
    assert (account.issuer, account.name) == ("ACME", "dave")


def test_image_without_qr_code_is_refused(tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (80, 80), "white").save(blank)
    with pytest.raises(AuthenticatorError, match="no QR code found"):
        account_from_input(str(blank))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(AuthenticatorError, match="no such file"):
        account_from_input(str(tmp_path / "nope.png"))


@pytest.mark.parametrize("secret", ["AE", "AAAAAAAA", "JBSWY3DPEHPK3PX"], ids=["8-bits", "40-bits", "75-bits"])
def test_a_secret_under_80_bits_is_refused(secret):
    """A one-byte secret gives 256 possible code sequences: one code seen, the rest follow."""
    with pytest.raises(AuthenticatorError, match="otpauth secret is too short"):
        parse_totp_uri(f"otpauth://totp/x?secret={secret}")
    assert parse_totp_uri("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP").totp.secret == "JBSWY3DPEHPK3PXP"  # 80 bits


def test_a_secret_longer_than_1024_characters_is_refused():
    with pytest.raises(AuthenticatorError, match="longer than 1024"):
        parse_totp_uri("otpauth://totp/x?secret=" + "A" * 1032)


@pytest.mark.parametrize("issuer", ["", "%20", "+"])
def test_an_empty_issuer_parameter_keeps_the_label_s_issuer(issuer):
    account = parse_totp_uri(f"otpauth://totp/Example:carol?secret=JBSWY3DPEHPK3PXP&issuer={issuer}")
    assert (account.issuer, account.name) == ("Example", "carol")
    assert parse_totp_uri("otpauth://totp/carol?secret=JBSWY3DPEHPK3PXP&issuer=").issuer == ""
    assert parse_totp_uri("otpauth://totp/A:carol?secret=JBSWY3DPEHPK3PXP&issuer=B").issuer == "B"
