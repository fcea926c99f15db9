"""``recover ACCOUNT --qr IMAGE | --password``: give a restored push account a new device key.

After a restore (or on any new device), a push account holds no key: the old phone's key
never left it. Recovery proves the user's right to the account again and registers a new
P-256 key made here, at the server's recovery endpoints (docs/recovery.md):

- ``--qr IMAGE``: a recovery QR code an admin issued (work accounts). The image (or the
  ``idp-recovery://`` URI itself) is decoded, and ``ENDPOINT/redeem`` spends it once.
- ``--password``: the account's password, then a 6-digit code the server e-mails to the
  account's verified address (personal accounts). Both come from stdin when it is not a
  terminal -- line 1 the password, line 2 the code (a wrong code: each further line is
  another try, while the server leaves it tries). The code line is read only after the
  server has sent the code, so a script writes the password, waits for the e-mail, then
  writes the code. On a terminal both are asked for (the password without echo).

Every request that registers the key is a JWS signed by the new key (the key proves
itself, as in a push registration). On success the account becomes active with its new
device id and key, and the automatic backup runs (as after any change).
"""

import getpass
import secrets
import sys
import time
from dataclasses import dataclass

import requests

from authenticator import fetch, uris
from authenticator.accounts import ACTIVE, PUSH, Account, PushData, check_label_part, find_account
from authenticator.errors import AuthenticatorError
from authenticator.push import keys
from authenticator.push.activation import PushActivation, activation_issuer, device_name, server_username
from authenticator.push.client import ServerUnreachable, host_of, parse_json
from authenticator.qr import decode_qr_image
from authenticator.terminal import command_line, is_terminal, is_text, read_line, shown

URI_SCHEME = "idp-recovery"
SUPPORTED_VERSION = "1"
TIMEOUT = 15.0  # seconds for any one read
DEADLINE = 30.0  # seconds for a whole exchange (fetch.py): the server may send an e-mail meanwhile
TOKEN_LIFETIME = 60
MAX_CODE_TRIES = 10  # codes sent for one e-mailed code at most (the server allows code_tries, 5 by default)


# Exit statuses 30-39 (errors.py: 1-17; push: 20-26).
class RecoveryCodeUsed(AuthenticatorError):
    exit_code = 30


class RecoveryCodeExpired(AuthenticatorError):
    exit_code = 31


class RecoveryCodeRevoked(AuthenticatorError):
    exit_code = 32


class RecoveryCodeUnknown(AuthenticatorError):
    exit_code = 33


class WrongPassword(AuthenticatorError):
    exit_code = 34


class WrongCode(AuthenticatorError):
    exit_code = 35


class CodeExpired(AuthenticatorError):
    exit_code = 36


class TooManyAttempts(AuthenticatorError):
    exit_code = 37


class RecoveryRefused(AuthenticatorError):
    """Anything else the server refused (disabled, device exists, malformed)."""

    exit_code = 38


def parse_recovery_uri(uri: str) -> dict:
    """The code's parameters, checked as ``push.activation.parse_activation_uri`` checks its own."""
    parts = uris.split(uri.strip(), AuthenticatorError, "recovery QR code")
    if parts.scheme != URI_SCHEME or parts.netloc != "redeem":
        raise AuthenticatorError("this QR code is not a recovery QR code (expected idp-recovery://redeem)")
    query = uris.single_valued(parts.query, AuthenticatorError, "recovery QR code")
    if query.get("v") != SUPPORTED_VERSION:
        raise AuthenticatorError(f"recovery QR code version {query.get('v')!r} is not supported (this app reads v1)")
    for name in ("issuer", "endpoint", "secret"):
        if not query.get(name):
            raise AuthenticatorError(f"recovery QR code without {name!r}")
    uris.server_url(query["issuer"], AuthenticatorError, "issuer URL in the recovery QR code")
    uris.server_url(query["endpoint"], AuthenticatorError, "endpoint URL in the recovery QR code")
    uris.same_origin(query["endpoint"], query["issuer"], AuthenticatorError, "endpoint URL in the recovery QR code")
    return query


def signed_request(key, audience: str, claims: dict) -> str:
    """A JWS signed by the new key, which travels in the header (server: plugins/qr_recovery/signed.py)."""
    now = int(time.time())
    header = {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(key)}
    return keys.sign_jwt(key, header, {"aud": audience, "iat": now, "exp": now + TOKEN_LIFETIME,
                                       "jti": secrets.token_urlsafe(24), **claims})


def _post(url: str, body: dict, session=None) -> tuple:
    http = session or requests.Session()
    try:  # bounded in size and in time, as the push client's exchanges (fetch.py)
        response = fetch.exchange(http, "POST", url, seconds=DEADLINE, read_timeout=TIMEOUT, json=body)
    except fetch.TooLarge:
        raise RecoveryRefused(fetch.too_large(host_of(url))) from None
    except (requests.RequestException, fetch.TooSlow) as exc:
        raise ServerUnreachable(fetch.unreachable(host_of(url), exc, DEADLINE)) from None
    try:
        data = parse_json(response.content)
    except ValueError:  # not JSON, or JSON the app refuses (NaN, nested too deep): as if it had none
        data = {}
    return response.status_code, data if isinstance(data, dict) else {}


def _refused(status: int, data: dict, url: str) -> AuthenticatorError:
    error = data.get("error") or "no error"
    if not isinstance(error, str):  # a list or an object from a broken or hostile server: one line all the same
        error = "an error that is not text"
    return RecoveryRefused({
        "device_exists": "this device's new key is already registered (run recover again)",
        "push_unavailable": "the server has push sign-in switched off",
        "personal_recovery_disabled": "recovery by password is switched off for this account: ask your administrator "
                                      "for a recovery QR code",
        "code_not_sent": "the server could not send the code by e-mail: try again later or ask your administrator",
        "no_push_device": "this account has no push sign-in to recover on the server: ask your administrator "
                          "for a recovery QR code",
        "push_not_allowed": "your organization no longer takes push sign-in: sign in with another method, or ask "
                            "your administrator",
        "account_disabled": "this account is disabled: ask your administrator",
        "push_suspended": "push sign-in is suspended for this account after a reported sign-in: ask your "
                          "administrator",
        "password_reset_by_email": "the password was just reset by e-mail, which alone cannot add a phone: sign "
                                   "in once with another method (a recovery code, say), or ask your administrator "
                                   "for a recovery QR code",
    }.get(error, f"the server refused the recovery (HTTP {status}, {error}) at {host_of(url)}"))


# --- the two ways ------------------------------------------------------------------------


def redeem_qr(account, source: str, key) -> dict:
    """Spend the recovery QR code in ``source`` (image path or URI) for ``key``; the server's answer."""
    uri = source if source.strip().startswith(URI_SCHEME + "://") else decode_qr_image(source)
    query = parse_recovery_uri(uri)
    issuer = account.push.issuer_url.rstrip("/")
    if query["issuer"].rstrip("/") != issuer:
        raise AuthenticatorError(f"this recovery QR code is for {query['issuer']}, not for {account.label} "
                                 f"({issuer})")
    if query.get("user") and account.push.username and query["user"].lower() != account.push.username.lower():
        raise AuthenticatorError(f"this recovery QR code is for {query['user']}, not for {account.label}")
    return redeem(query, key, query.get("user") or account.push.username)


def redeem(query: dict, key, user: str) -> dict:
    """``POST R/redeem`` of a checked recovery URI's secret for ``key``: the server's answer, or the error."""
    url = query["endpoint"].rstrip("/") + "/redeem"
    claims = {"secret": query["secret"], "name": device_name()}
    if user:  # optional (docs/recovery.md 1.3): a URI without one sends none, rather than ""
        claims["user"] = user
    token = signed_request(key, url, claims)
    status, data = _post(url, {"request": token})
    if status == 201:
        return data
    if status == 429:  # the server's limit on requests per address (docs/recovery.md 2): nothing spent
        raise _too_many(data)
    error = data.get("error")
    if error == "recovery_code_used":
        raise RecoveryCodeUsed("this recovery QR code was already used: ask your administrator for a new one")
    if error == "recovery_code_expired":
        raise RecoveryCodeExpired("this recovery QR code has expired: ask your administrator for a new one")
    if error == "recovery_code_revoked":
        raise RecoveryCodeRevoked("this recovery QR code was revoked by an administrator: ask for a new one")
    if error == "invalid_recovery_code":
        raise RecoveryCodeUnknown("the server does not know this recovery QR code (wrong server, or it was "
                                  "replaced): ask your administrator for a new one")
    raise _refused(status, data, url)


@dataclass(frozen=True)
class RecoveryRedemption(PushActivation):
    """``add idp-recovery://redeem?...`` on a device that holds no backup of the account: the
    recovery QR code makes a new push account, as an activation code does (an ``intake``
    ``PendingAccount``, shown and kept as one). Nothing is sent until :meth:`complete`, called
    with the store open."""

    def complete(self) -> Account:
        key = keys.new_private_key()
        answer = redeem(self.query, key, self.username)
        device_id = keys.device_id(key)
        if answer.get("device_id") != device_id:
            raise RecoveryRefused("the server registered a different device id than this key's")
        username = server_username(answer) or self.username
        push = PushData(issuer_url=self.query["issuer"], username=username, device_id=device_id,
                        device_private_key=keys.private_pem(key),
                        extra={"endpoint": _endpoint_of(answer, self.query["issuer"])})
        return Account(id="", type=PUSH, issuer=self.issuer, name=username, push=push)


def read_recovery(uri: str) -> RecoveryRedemption:
    """The ``intake.URI_HANDLERS`` entry: check the URI, send nothing."""
    query = parse_recovery_uri(uri)
    check_label_part(activation_issuer(query["issuer"]), "issuer in the recovery QR code")
    check_label_part(query.get("user") or "", "user in the recovery QR code")
    return RecoveryRedemption(query)


class LineReader:
    """The password and then the code: from stdin's lines in scripts, asked on a terminal.

    A stdin that is not a terminal is read, never prompted on: that is the documented way
    for scripts (docs/recovery.md section 3). No stdin at all (``<&-``) reads as empty.
    """

    def __init__(self, stream=None, err=None):
        self.stream = stream or sys.stdin
        self.err = err or sys.stderr

    def password(self, user: str, host: str) -> str:
        """Line 1 (or typed without echo); called before the request that carries it. The prompt names
        the server it goes to: the issuer URL came from a backup, and a bare "Password:" would not
        let the user notice that it is not their provider's."""
        if is_terminal(self.stream):
            try:
                typed = getpass.getpass(f"Password for {shown(user)} at {shown(host)}: ")
            except (EOFError, KeyboardInterrupt):
                raise AuthenticatorError("no password given") from None
            except UnicodeDecodeError:
                raise AuthenticatorError("the password typed is not UTF-8 text") from None
            return _text(typed, "the password typed is not UTF-8 text")
        line = read_line(self.stream)
        if not line.strip("\r\n"):
            raise AuthenticatorError("no password on stdin (line 1: the password, line 2: the e-mailed code)")
        return _text(line.rstrip("\r\n"), "stdin is not UTF-8 text")

    def code(self, sent_to: str) -> str:
        """Line 2 (or typed), read once the server has sent it; called before the request that carries it."""
        prompt = f"Code sent to {shown(sent_to)}: "
        if is_terminal(self.stream):
            print(prompt, end="", file=self.err, flush=True)
        else:
            print(f"a code was sent to {shown(sent_to)}; reading it from stdin", file=self.err, flush=True)
        code = self._code_line()
        if not code:
            raise AuthenticatorError("no code given (line 2 of stdin, or typed when asked)")
        return code

    def another_code(self, tries_left: int) -> str:
        """After a wrong code: the next line (or typed again), "" when none comes. The server leaves
        that code its tries, and a new run of ``recover`` could not use them: it e-mails a new code."""
        if is_terminal(self.stream):
            print(f"Wrong code ({tries(tries_left)} left). Code: ", end="", file=self.err, flush=True)
        else:
            print(f"wrong code ({tries(tries_left)} left); reading another from stdin", file=self.err, flush=True)
        return self._code_line()

    def _code_line(self) -> str:
        return _text("".join(read_line(self.stream).split()), "stdin is not UTF-8 text")


def tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"


def _text(value: str, message: str) -> str:
    """``value`` unless it came from bytes that are not UTF-8: a stdin decoded with surrogateescape
    (the C.UTF-8 locale, PYTHONUTF8) hands them over as lone surrogates, which must not be sent."""
    if not is_text(value):
        raise AuthenticatorError(message)
    return value


def _endpoint_of(answer: dict, issuer: str) -> str:
    """The push endpoint the server's answer names when it is on the issuer's server (it always
    is, docs/push-protocol.md), else the protocol's own: an answer cannot move the account elsewhere."""
    named = answer.get("endpoint")
    if isinstance(named, str) and named:
        try:
            uris.same_origin(named, issuer, AuthenticatorError, "push endpoint")
            return named
        except AuthenticatorError:
            pass
    return issuer.rstrip("/") + "/factors/push/v1"


def recover_by_password(account, key, reader: LineReader) -> dict:
    # (The issuer came from an activation or a backup: the password goes nowhere plain-text.)
    uris.server_url(account.push.issuer_url, AuthenticatorError, "account's server URL")
    endpoint = account.push.issuer_url.rstrip("/") + "/factors/qr_recovery"
    start_url = endpoint + "/personal/start"
    password = reader.password(account.push.username, host_of(start_url))
    status, data = _post(start_url, {"email": account.push.username, "password": password})
    if status == 401:
        raise WrongPassword(f"wrong e-mail or password for {account.push.username} at {host_of(start_url)}")
    if status == 429:
        raise _too_many(data)
    if status != 200 or not data.get("recovery_id"):
        raise _refused(status, data, start_url)
    code = reader.code(data.get("sent_to") or "your e-mail address")
    finish_url = endpoint + "/personal/finish"
    for _try in range(MAX_CODE_TRIES):  # a wrong code may be given again while the server leaves it tries
        token = signed_request(key, finish_url, {"recovery_id": data["recovery_id"], "code": code,
                                                 "name": device_name()})
        status, answer = _post(finish_url, {"request": token})
        if status == 201:
            return answer
        if status == 429:
            raise _too_many(answer)
        error = answer.get("error")
        if error == "code_expired":
            raise CodeExpired("the code has expired or was used up: run recover again for a new one")
        if error != "invalid_code":
            raise _refused(status, answer, finish_url)
        left = _count(answer.get("tries_left"), None)
        if not left:
            raise WrongCode("wrong code: no tries left, run recover again for a new code")
        if _try == MAX_CODE_TRIES - 1:
            break  # (a server that never runs out of tries, and a stdin that never runs out of lines)
        code = reader.another_code(left)
        if not code:
            # The tries left belong to this run's code: a new run starts over with a new one.
            raise WrongCode(f"wrong code ({tries(left)} left, but no other code was given): run recover again, "
                            "which e-mails a new code")
    raise WrongCode(f"wrong code {MAX_CODE_TRIES} times: run recover again for a new code")


def _too_many(data: dict) -> TooManyAttempts:
    """A 429 from any of the recovery requests: exit 37, with the wait the server asked for."""
    return TooManyAttempts(f"too many attempts: wait {_count(data.get('retry_after'), 60)} seconds and try again")


def _count(value, default):
    """A whole number the server sent for the message (seconds, tries), else ``default``: the server
    chooses the value, and a list or a 400-digit number does not belong in a one-line message."""
    return value if type(value) is int and 0 <= value <= 1_000_000 else default


def cmd_recover(ctx, args) -> int:
    from dataclasses import replace

    vault = ctx.existing_vault()
    try:
        account = find_account(vault.accounts if vault else [], args.account)
    except AuthenticatorError as exc:
        if args.qr and not any(a.type == PUSH for a in (vault.accounts if vault else [])):
            # A new phone without a backup: there is nothing to recover, but the code adds the account.
            raise AuthenticatorError(f"{exc}: on a device holding no backup of the account, add the recovery QR "
                                     f"code instead ({command_line('add IMAGE')})") from None
        raise
    if account.type != PUSH or account.push is None:
        raise AuthenticatorError(f"{account.label} is not a push account: only push accounts need recovery")
    if account.status == ACTIVE and account.push.device_private_key:
        # Recovering it would spend a code, register a second device and overwrite the key of the
        # first, which would stay live on the server with its key nowhere.
        raise AuthenticatorError(f"{account.label} already has its own key on this device: recover is for "
                                 "accounts restored from a backup")
    key = keys.new_private_key()
    if args.qr:
        answer = redeem_qr(account, args.qr, key)
    else:
        answer = recover_by_password(account, key, LineReader(err=ctx.err))
    device_id = keys.device_id(key)
    if answer.get("device_id") != device_id:
        raise RecoveryRefused("the server registered a different device id than this key's")
    push = replace(account.push, device_id=device_id, device_private_key=keys.private_pem(key), status=ACTIVE,
                   extra={**account.push.extra, "endpoint": _endpoint_of(answer, account.push.issuer_url)})
    registered = replace(account, push=push)
    try:
        with ctx.changing_vault(create=False) as vault:  # saves, then the automatic backup
            # Checked again under the lock: the check above ran before the network step, and a
            # second `recover` started meanwhile may have saved its key since. Overwriting it would
            # lose that key while its device stays live on the server; this run's device is the one
            # to revoke instead.
            current = next((a for a in vault.accounts if a.id == account.id), None)
            if current is None:
                raise PushActivation.not_saved(registered, "the account was removed from this device meanwhile")
            if current.push is not None and current.push.device_private_key:
                raise PushActivation.not_saved(
                    registered, f"another recover run gave this account its own key meanwhile (device "
                                f"{current.push.device_id}), which is kept")
            updated = replace(current, push=push)
            vault.replace(updated)
    except OSError as exc:  # registered on the server, but this device could not keep the key
        raise PushActivation.not_saved(registered, exc.strerror or str(exc)) from None
    how = "recovery QR code" if args.qr else "password and e-mailed code"
    ctx.emit({"id": updated.id, "issuer": updated.issuer, "name": updated.name, "type": updated.type,
              "status": ACTIVE, "device_id": device_id},
             f"recovered {shown(updated.label)} with a {how}: this device now has its own key "
             f"(device {device_id[:12]}…); the old phone keeps its own and can still approve requests: if it "
             f"was lost, remove it on your account's security page")
    return 0
