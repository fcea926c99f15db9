"""Code generation: RFC 6238 Appendix B vectors, agreement with pyotp, short secrets."""

import base64
import secrets

import pyotp
import pytest

from authenticator.accounts import TotpParams
from authenticator.totp import code_at, seconds_left

# RFC 6238 Appendix B: the seeds are ASCII "1234567890" repeated to 20/32/64 bytes.
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: str(v[0]))
def test_rfc6238_appendix_b(algorithm, vector):
    when, *expected = vector
    params = TotpParams(secret=b32(SEEDS[algorithm]), algorithm=algorithm, digits=8, period=30)
    assert code_at(params, when) == expected[["SHA1", "SHA256", "SHA512"].index(algorithm)]


@pytest.mark.parametrize("algorithm,digest", [("SHA1", "sha1"), ("SHA256", "sha256"), ("SHA512", "sha512")])
@pytest.mark.parametrize("digits,period", [(6, 30), (8, 60)])
def test_agrees_with_pyotp(algorithm, digest, digits, period):
    import hashlib

    secret = pyotp.random_base32(32)
    params = TotpParams(secret=secret, algorithm=algorithm, digits=digits, period=period)
    reference = pyotp.TOTP(secret, digits=digits, digest=getattr(hashlib, digest), interval=period)
    for _ in range(20):
        when = secrets.randbelow(4_000_000_000)
        assert code_at(params, when) == reference.at(when)


def test_eighty_bit_secrets_still_give_codes():
    # pyotp refuses these; issuers still hand them out, so the app must not.
    assert code_at(TotpParams(secret="JBSWY3DPEHPK3PXP"), 59).isdigit()


def test_seconds_left_counts_down_to_the_next_step():
    params = TotpParams(secret="JBSWY3DPEHPK3PXP", period=30)
    assert seconds_left(params, 60) == 30
    assert seconds_left(params, 89) == 1
