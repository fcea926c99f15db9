"""RFC 6238 code generation for a stored account.

Written out (a dozen lines over ``hmac``) rather than through pyotp, because
pyotp refuses secrets shorter than 112 bits while real issuers still hand out
80-bit ones (Google's own example ``JBSWY3DPEHPK3PXP``); a phone app must
produce codes for whatever the server enrolled. The tests check it against
the RFC 6238 Appendix B vectors and against pyotp.
"""

import base64
import hmac
import struct

from authenticator.accounts import TotpParams

_DIGESTS = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def secret_bytes(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper().rstrip("=")
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, digits: int, algorithm: str) -> str:
    """RFC 4226 section 5.3: HMAC, dynamic truncation, modulo 10**digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def code_at(params: TotpParams, for_time: float) -> str:
    counter = int(for_time) // params.period
    return hotp(secret_bytes(params.secret), counter, params.digits, params.algorithm)


def seconds_left(params: TotpParams, for_time: float) -> int:
    """Seconds until the code at ``for_time`` is replaced by the next one."""
    return params.period - int(for_time) % params.period
