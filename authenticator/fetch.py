"""One HTTP exchange with a server the app does not trust: bounded in size and in time.

``requests`` bounds neither. ``response.content`` reads whatever the server sends into memory, and
its ``timeout`` is per read: a server sending one byte every 5 s (headers or body) holds a command
for ever. Here an exchange has a deadline for the whole of it, headers included, and an answer
stops at MAX_ANSWER_BYTES (a Content-Length over it is refused before reading anything).

The exchange runs in a daemon thread and the caller waits for it until the deadline: that is the
only way to bound the time headers take with ``requests``. Once the deadline has passed, the thread
stops reading at its next chunk of body; one still stuck in the headers ends with the connection
(or with the process: it is a daemon).
"""

import threading
import time
from dataclasses import dataclass
from typing import Mapping

import requests

# Far more than any answer of the protocols (a list of challenges is a few KiB).
MAX_ANSWER_BYTES = 1 << 20
# What the provider records of this app (a user's "Recent activity" shows a new phone registered
# "from" it): requests' default, "python-requests/2.x", reads as a stranger's script there.
USER_AGENT = "idp-authenticator"
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What the app reads of a response: its status, headers and (bounded) body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


class TooLarge(Exception):
    """The answer is longer than MAX_ANSWER_BYTES."""


class TooSlow(Exception):
    """The whole answer did not arrive before the deadline."""


def exchange(http, method: str, url: str, *, seconds: float, read_timeout: float, **kwargs) -> Answer:
    """``http.request(method, url, **kwargs)`` within ``seconds`` overall. Raises TooSlow, TooLarge, or
    what ``requests`` raises (RequestException)."""
    deadline = time.monotonic() + seconds
    outcome: dict = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["answer"] = _exchange(http, method, url, deadline, read_timeout, kwargs)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True, name=f"fetch {method}").start()
    if not finished.wait(max(deadline - time.monotonic(), 0)):
        raise TooSlow()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["answer"]


def _exchange(http, method: str, url: str, deadline: float, read_timeout: float, kwargs: dict) -> Answer:
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    response = http.request(method, url, timeout=(read_timeout, read_timeout), allow_redirects=False,
                            stream=True, headers=headers, **kwargs)
    try:
        length = response.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
            raise TooLarge()
        body = bytearray()
        while True:
            if time.monotonic() > deadline:
                raise TooSlow()
            # read1: what one read brings (a trickle returns at once), decoded to at most CHUNK bytes.
            chunk = response.raw.read1(CHUNK)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise TooLarge()
        return Answer(response.status_code, response.headers, bytes(body))
    except (TooLarge, TooSlow):
        raise
    except Exception as exc:  # urllib3's read errors (a timeout, a broken chunk), as requests reports them
        raise requests.ConnectionError(type(exc).__name__) from None
    finally:
        response.close()


def too_large(host: str) -> str:
    return f"the server at {host} sent an answer larger than {MAX_ANSWER_BYTES // 1024} KiB"


def unreachable(host: str, exc: BaseException, seconds: float) -> str:
    """Why an exchange failed: "cannot reach the server at HOST: ..."."""
    why = f"no whole answer within {seconds:g} s" if isinstance(exc, TooSlow) else type(exc).__name__
    return f"cannot reach the server at {host}: {why}"
