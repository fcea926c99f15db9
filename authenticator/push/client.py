"""HTTP client for protocol v1, with the failures a user must understand turned into clear errors.

The server answers every device-authentication failure with the same 401; the client tells the
likely cause apart itself: if this device's clock agrees with the server's ``Date`` header, the
device has most likely been revoked.
"""

import email.utils
import json
import math
import re
import time
from typing import Optional
from urllib.parse import quote, urlsplit

import requests

from authenticator import fetch
from authenticator.errors import AuthenticatorError
from authenticator.push import keys
from authenticator.terminal import command_line

TIMEOUT = 10.0  # seconds for any one read
# Seconds for a whole exchange, headers and body (plus the long-poll's wait): TIMEOUT alone is per
# read, and a server trickling a byte at a time held every push command for ever (fetch.py).
DEADLINE = 20.0
CLOCK_TOLERANCE = 30
# docs/push-protocol.md section 10: request ids are 64 lowercase hex characters (the server's
# secrets.token_hex(32)). An id goes into the path of a signed POST: anything else ("../../register",
# "x?y=1#frag") would let the server choose which URL this device signs an answer for.
CHALLENGE_ID = re.compile(r"[0-9a-f]{64}")


class ServerUnreachable(AuthenticatorError):
    exit_code = 20


class ActivationExpired(AuthenticatorError):
    exit_code = 21


class DeviceRevoked(AuthenticatorError):
    exit_code = 22


class ChallengeUnavailable(AuthenticatorError):
    exit_code = 23


class ProtocolError(AuthenticatorError):
    exit_code = 24


def host_of(url: str) -> str:
    """The host:port of a URL, for error messages (the URL itself when urllib cannot split it: a
    restored account's server URL comes from a backup file, unchecked by any URI parser)."""
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


class PushClient:
    """One device at one server: ``endpoint`` is E from the activation URI."""

    def __init__(self, endpoint: str, key=None, session: Optional[requests.Session] = None,
                 account_id: Optional[str] = None):
        self.endpoint = endpoint.rstrip("/")
        self.key = key
        self.http = session or requests.Session()
        self.account_id = account_id  # this device's id of the account, for the advice in messages

    # --- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, url: str, wait: float = 0, **kwargs) -> fetch.Answer:
        """One exchange, bounded in size and in time (``wait``: a long-poll's seconds, added to both)."""
        seconds = DEADLINE + wait
        try:
            return fetch.exchange(self.http, method, url, seconds=seconds, read_timeout=TIMEOUT + wait, **kwargs)
        except fetch.TooLarge:
            raise ProtocolError(fetch.too_large(host_of(url))) from None
        except (requests.RequestException, fetch.TooSlow) as exc:
            raise ServerUnreachable(fetch.unreachable(host_of(url), exc, seconds)) from None

    def _signed(self, method: str, path: str, wait: float = 0, params=None, extra=None):
        url = self.endpoint + path
        token = keys.request_token(self.key, audience=url, extra=extra)
        response = self._send(method, url, wait=wait, params=params,
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        if response.status_code == 401:
            raise self._explain_401(response)
        return response

    def _explain_401(self, response: fetch.Answer) -> AuthenticatorError:
        date = response.headers.get("Date")
        if date:
            try:
                skew = abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time())
            except (TypeError, ValueError):
                skew = 0
            if skew > CLOCK_TOLERANCE:
                return ProtocolError(f"the server refused this device's signature; this device's clock is "
                                     f"{int(skew)} s off the server's: set the clock right and retry")
        # `add` refuses an account that is already here: the advice names both steps.
        remove = command_line(f"remove {self.account_id}" if self.account_id else "remove ACCOUNT")
        return DeviceRevoked("the server no longer accepts this device (it was revoked, or the account removed): "
                             f"remove the account here ({remove}), then add it again with a new activation code")

    @staticmethod
    def _json(response: fetch.Answer) -> dict:
        try:
            data = parse_json(response.content)
        except ValueError:
            raise ProtocolError(f"unexpected answer from the server (HTTP {response.status_code})") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"unexpected answer from the server (HTTP {response.status_code})")
        return data

    # --- the protocol -----------------------------------------------------------------

    def register(self, code: str, name: str) -> dict:
        """Register this device's key with an activation code; returns the server's answer."""
        url = self.endpoint + "/register"
        token = keys.registration_token(self.key, audience=url, code=code, name=name)
        response = self._send("POST", url, json={"registration": token})
        data = self._json(response) if response.content else {}
        if response.status_code == 201:
            if data.get("device_id") != keys.device_id(self.key):
                raise ProtocolError("the server registered a different device id than this key's")
            return data
        error = data.get("error")
        if error == "invalid_activation":
            raise ActivationExpired("the activation code has expired or was already used: ask for a new QR code")
        if error == "device_exists":
            raise ProtocolError("this device key is already registered")
        raise ProtocolError(f"the server refused the registration (HTTP {response.status_code}, {error or 'no error'})")

    def pending(self, wait: float = 0) -> list:
        """Pending challenges; with ``wait`` > 0 a long-poll that returns at the first one."""
        response = self._signed("GET", "/challenges", wait=wait, params={"wait": int(wait)})
        data = self._json(response)
        if response.status_code != 200 or not isinstance(data.get("challenges"), list):
            raise ProtocolError(f"unexpected answer from the server (HTTP {response.status_code})")
        return [_well_formed(c) for c in data["challenges"] if _is_challenge(c)]

    def answer(self, challenge_id: str, decision: str, number: Optional[str] = None) -> dict:
        """``decision``: approve (with ``number``), deny or fraud. Returns {"status", "reason"?}, with
        ``"already_counted": True`` when the server had recorded this device's answer already (the
        reply to it lost, the answer sent again), or ``"reported": True`` for a fraud report on a
        request that had closed (reported all the same)."""
        if not is_challenge_id(challenge_id):  # pending() lists no other; checked again where it is used
            raise ChallengeUnavailable(f"no pending request {challenge_id} for this account")
        extra = {"challenge": challenge_id, "decision": decision}
        if number is not None:
            extra["number"] = number
        # Quoted although checked: the path must stay one segment whatever a later change lets through.
        path = f"/challenges/{quote(challenge_id, safe='')}/answer"
        try:
            response = self._signed("POST", path, extra=extra)
        except ServerUnreachable:
            # No reply (a dropped connection, a timeout): the answer may have landed all the same.
            # Sent once more, signed afresh (the same token again is a replay: the uniform 401); if
            # the first one landed, the server says what it recorded (docs/push-protocol.md 5.3).
            response = self._signed("POST", path, extra=extra)
        data = self._json(response)
        if response.status_code == 200:
            return data
        error = data.get("error")
        if error == "unknown_challenge":
            raise ChallengeUnavailable(f"no pending request {challenge_id} for this account")
        if error == "challenge_closed":
            earlier = _recorded_answer(data.get("answered"))
            if decision == "fraud" and (earlier or {}).get("status") != "fraud" and data.get("reported") is True:
                # Reported all the same (a request approved by mistake, expired, cancelled): it counts.
                return {"status": "fraud", "reported": True}
            if earlier is not None:
                return {**earlier, "already_counted": True}
            raise ChallengeUnavailable(f"request {challenge_id} was already answered or has expired")
        raise ProtocolError(f"the server refused the answer (HTTP {response.status_code}, {error or 'no error'})")


# What a first answer may have recorded (`answered` of a 409): anything else is no such record.
ANSWER_STATUSES = ("approved", "denied", "fraud")


def _recorded_answer(answered) -> Optional[dict]:
    """The ``answered`` member of a ``409 challenge_closed`` (this device's first answer, the body
    of its 200) as {"status", "reason"?}, or None when there is none the app can read."""
    if not isinstance(answered, dict) or answered.get("status") not in ANSWER_STATUSES:
        return None
    reason = answered.get("reason")
    return {"status": answered["status"], **({"reason": reason} if isinstance(reason, str) else {})}


# Far deeper than any answer of protocol v1 (a list of challenges with a context: 4 levels). A deeper
# one is refused as a whole: what the app keeps of it is printed again (`pending --json`), and
# json.dumps, called deeper in the stack than json.loads was, would fail on what the parser just read.
MAX_JSON_DEPTH = 32


def parse_json(content: bytes):
    """A server's answer as JSON, or ValueError. Stricter than ``response.json()``: NaN and Infinity
    (which Python's parser reads, as it reads 1e999 as infinity, and which then fail int() and
    arithmetic) are refused, and so is JSON nested deeper than MAX_JSON_DEPTH or than the parser
    recurses (RecursionError)."""
    try:
        data = json.loads(content, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if _nesting_depth(data) > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deep")
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


def _nesting_depth(value) -> int:
    """How deeply lists and objects nest in ``value`` (without recursing, whatever the depth)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def is_challenge_id(value) -> bool:
    """Whether ``value`` is a request id as the protocol writes them (CHALLENGE_ID, the whole string:
    fullmatch, since ``$`` would also let a trailing newline through)."""
    return isinstance(value, str) and CHALLENGE_ID.fullmatch(value) is not None


def _is_challenge(item) -> bool:
    """A challenge the app can show and answer: an object whose id is a protocol id. Others are
    skipped: the server chose them, and an id outside the protocol is never put into a URL."""
    return isinstance(item, dict) and is_challenge_id(item.get("id"))


def _well_formed(challenge: dict) -> dict:
    """The fields the app reads, in the types docs/push-protocol.md gives them (a server that sends
    something else gets its request shown with blanks, not a traceback)."""
    context = challenge.get("context")
    return {**challenge, "expires_at": _timestamp(challenge.get("expires_at")),
            "context": context if isinstance(context, dict) else {}}


def _timestamp(value):
    """A Unix time the app can compute with, else 0 (shown as expired): no bool, and no integer too
    large for a float (parse_json already refuses non-finite floats; an integer of 400 digits is
    valid JSON, and ``value - time.time()`` raises OverflowError on it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    try:
        return value if math.isfinite(float(value)) else 0
    except OverflowError:
        return 0
