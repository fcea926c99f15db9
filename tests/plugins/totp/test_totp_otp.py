"""RFC 6238 arithmetic: Appendix B vectors (errata seeds for SHA256/SHA512), drift, replay hints."""
import hashlib

import pyotp
import pytest

from idp_plugins.totp.otp import hotp, normalise, time_step, verify_totp

SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
# RFC 6238 Appendix B, 8 digits.
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize("t, sha1, sha256, sha512", VECTORS)
def test_rfc6238_appendix_b(t, sha1, sha256, sha512):
    for algorithm, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        assert hotp(SEEDS[algorithm], time_step(t), 8, algorithm) == expected
        assert verify_totp(SEEDS[algorithm], expected, t, -1, 8, algorithm) == time_step(t)


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
@pytest.mark.parametrize("digits", [6, 8])
def test_agrees_with_pyotp(algorithm, digits):
    key = pyotp.random_base32(64)
    secret = __import__("base64").b32decode(key)
    totp = pyotp.TOTP(key, digits=digits, digest=getattr(hashlib, algorithm.lower()))
    assert hotp(secret, time_step(1_700_000_000), digits, algorithm) == totp.at(1_700_000_000)


NOW = 1_700_000_015  # mid-step


@pytest.mark.parametrize("offset, accepted", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_one_step_of_drift(offset, accepted):
    secret = SEEDS["SHA1"]
    step = time_step(NOW) + offset
    code = hotp(secret, step, 6, "SHA1")
    assert verify_totp(secret, code, NOW, -1) == (step if accepted else None)


def test_used_step_is_returned_for_the_replay_check():
    secret = SEEDS["SHA1"]
    step = time_step(NOW)
    code = hotp(secret, step, 6, "SHA1")
    assert verify_totp(secret, code, NOW, last_step=step) == step  # caller sees step <= last_step: replay


@pytest.mark.parametrize("typed", [None, "", "12345", "1234567", "12a456", "١٢٣٤٥٦", 123456, "0" * 5000])
def test_malformed_codes_are_refused(typed):
    assert normalise(typed, 6) is None
    assert verify_totp(SEEDS["SHA1"], typed, NOW, -1) is None


def test_spaces_are_ignored():
    code = hotp(SEEDS["SHA1"], time_step(NOW), 6, "SHA1")
    assert verify_totp(SEEDS["SHA1"], f" {code[:3]} {code[3:]} ", NOW, -1) == time_step(NOW)


def test_wrong_code_walks_the_same_path(monkeypatch):
    """Every candidate of the window is computed for a wrong code exactly as for a right one."""
    from idp_plugins.totp import otp

    calls = []
    real = otp.hotp
    monkeypatch.setattr(otp, "hotp", lambda *a: calls.append(a[1]) or real(*a))
    right = real(SEEDS["SHA1"], time_step(NOW) - 1, 6, "SHA1")
    otp.verify_totp(SEEDS["SHA1"], right, NOW, -1)
    right_calls, calls[:] = list(calls), []
    otp.verify_totp(SEEDS["SHA1"], "000000" if right != "000000" else "111111", NOW, -1)
    assert calls == right_calls and len(calls) == 3
