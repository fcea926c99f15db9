"""``pending``, ``approve``, ``deny`` and ``watch``: the push commands of ``idp-authenticator``.

Each command reads the push accounts of the store, talks to their servers with
:class:`PushClient` and prints one line per result (``--json``: one JSON document).
A request id may be shortened to any unique prefix of at least 6 characters.

Each account's server is asked on its own: one that cannot be asked (down, answering garbage,
or no longer knowing this device) costs a warning line on stderr naming it, never the other
accounts' requests. A command fails for it only when no server answered at all (``watch``: at
its start; once watching, it warns and keeps asking).
"""

import datetime
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from authenticator.accounts import ACTIVE, PUSH, Account, ensure_can_approve
from authenticator.errors import AuthenticatorError
from authenticator.push import keys
from authenticator.push.client import (
    ChallengeUnavailable,
    DeviceRevoked,
    ProtocolError,
    PushClient,
    ServerUnreachable,
    host_of,
)
from authenticator.terminal import command_line, printable, read_line, shown

MIN_PREFIX = 6
MAX_PARALLEL = 8  # servers asked at once by collect()
WATCH_WAIT = 20
# What one account's server can do wrong: it fails that account, not the command.
SERVER_FAILURES = (ServerUnreachable, DeviceRevoked, ProtocolError)


class NoPushAccounts(AuthenticatorError):
    """A push command on a device without push accounts (status 1, as any other user error)."""


def push_accounts(ctx) -> list:
    vault = ctx.existing_vault()
    accounts = [a for a in (vault.accounts if vault else []) if a.type == PUSH]
    if not accounts:
        raise NoPushAccounts("this device holds no push accounts: add one with an activation QR code")
    return accounts


def client_for(account: Account) -> PushClient:
    ensure_can_approve(account)
    endpoint = account.push.extra.get("endpoint") or account.push.issuer_url.rstrip("/") + "/factors/push/v1"
    return PushClient(endpoint, keys.load(account.push.device_private_key), account_id=account.id)


def _usable(accounts: list) -> list:
    return [a for a in accounts if a.status == ACTIVE and a.push and a.push.device_private_key]


def _when(unix) -> str:
    try:
        return datetime.datetime.fromtimestamp(int(unix)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def describe(challenge: dict, account: Account) -> str:
    """A request as the user reads it before deciding. Every field is quoted from outside (the
    User-Agent is chosen by whoever started the login): each is escaped on its own, so that only
    this layout's newlines reach the terminal."""
    context = challenge.get("context") or {}
    left = int(challenge.get("expires_at", 0) - time.time())
    parts = [f"{shown(challenge['id'])}  {shown(account.label)}",
             f"application: {shown(context.get('application') or '(unnamed)')}",
             f"from {shown(context.get('ip') or '?')}", f"at {_when(context.get('time'))}",
             f"expires in {max(left, 0)}s"]
    if context.get("user_agent"):
        parts.append(f"browser: {shown(str(context['user_agent'])[:80])}")
    return "  ".join(parts[:2]) + "\n    " + "; ".join(parts[2:])


def _summary(challenge: dict, account: Account) -> dict:
    return {"id": challenge["id"], "account": account.id, "context": challenge.get("context") or {},
            "expires_at": challenge.get("expires_at"), "digits": challenge.get("digits")}


def collect(accounts: list, wait: float = 0) -> tuple[list, list]:
    """([(account, challenge)] of every usable push account whose server answered, oldest first per
    account; [(account, error)] of those whose server could not be asked)."""
    def ask(account: Account):
        try:
            return client_for(account).pending(wait=wait), None
        except SERVER_FAILURES as exc:
            return [], exc

    usable = _usable(accounts)
    if len(usable) > 1:  # in parallel: one slow server (up to its deadline) holds none of the others
        with ThreadPoolExecutor(max_workers=min(len(usable), MAX_PARALLEL)) as pool:
            outcomes = list(pool.map(ask, usable))
    else:
        outcomes = [ask(account) for account in usable]
    found, failed = [], []
    for account, (challenges, error) in zip(usable, outcomes, strict=True):
        if error is not None:
            failed.append((account, error))
        found.extend((account, challenge) for challenge in challenges)
    return found, failed


def server_of(account: Account) -> str:
    return host_of(account.push.issuer_url)


def skipped(account: Account, error: AuthenticatorError) -> str:
    """The warning for one account whose server could not be asked."""
    return f"skipped the server at {server_of(account)} ({account.label}, id {account.id}): {error}"


def ensure_some_answered(failed: list, asked: int) -> None:
    """Raise when none of the ``asked`` servers answered: the one error as it is, or (several) one line
    naming each server, with the first error's exit status."""
    if not failed or len(failed) < asked:
        return
    if len(failed) == 1:
        raise failed[0][1]
    first = failed[0][1]
    raise type(first)("no push server answered: " + "; ".join(f"{server_of(a)}: {e}" for a, e in failed))


def answered(ctx, accounts: list) -> list:
    """What :func:`collect` found, with one warning on stderr per server that could not be asked;
    fails only when no server answered."""
    found, failed = collect(accounts)
    ensure_some_answered(failed, len(_usable(accounts)))
    for account, error in failed:
        ctx.warn(skipped(account, error))
    return found


def resolve(ctx, accounts: list, challenge_id: str):
    """The (account, full challenge id) a typed id or prefix names, among the servers that answered."""
    if not challenge_id:
        raise AuthenticatorError("give the request id (see pending)")
    if len(challenge_id) < MIN_PREFIX:  # no request id is that short: not "no pending request"
        raise AuthenticatorError(f"{challenge_id!r} is too short to name a request: give its id, or at least "
                                 f"{MIN_PREFIX} characters of it (see pending)")
    usable = _usable(accounts)
    if not usable:
        ensure_can_approve(accounts[0])  # explains why (restored, needs verification)
    found, failed = collect(usable)
    ensure_some_answered(failed, len(usable))
    matches = [(a, c["id"]) for a, c in found if c["id"].startswith(challenge_id)]  # (the whole id too)
    exact = [m for m in matches if m[1] == challenge_id]
    if exact or len(matches) == 1:
        for account, error in failed:  # answered anyway: the others are worth knowing about
            ctx.warn(skipped(account, error))
        return (exact or matches)[0]
    if len(matches) > 1:
        raise AuthenticatorError(f"{challenge_id!r} matches several requests: give more of the id")
    unasked = f"; the server(s) at {', '.join(server_of(a) for a, _ in failed)} could not be asked" if failed else ""
    raise ChallengeUnavailable(f"no pending request {challenge_id} (already answered, expired, or not for "
                               f"this device's accounts){unasked}")


def result_line(result: dict, challenge_id: str) -> str:
    line = _what_was_answered(result, shown(challenge_id))
    if result.get("already_counted"):
        # The first answer's reply was lost and the answer sent again: the server kept the first.
        return f"{line} (the reply to this answer was lost, so it was sent again: the server had already counted it)"
    return line


def _what_was_answered(result: dict, challenge_id: str) -> str:
    status = result.get("status")
    if status == "approved":
        return f"approved {challenge_id}"
    if status == "fraud":
        if result.get("reported"):  # the request had closed: the report counts all the same
            return (f"reported request {challenge_id} as fraud (it had already closed); push sign-in is "
                    "suspended until an admin clears it")
        return f"denied {challenge_id} and reported it as fraud; push sign-in is suspended until an admin clears it"
    if result.get("reason") == "wrong_number":
        return f"the number did not match: request {challenge_id} was refused"
    return f"denied {challenge_id}"


def cmd_pending(ctx, args) -> int:
    try:
        accounts = push_accounts(ctx)
    except NoPushAccounts:
        if not ctx.as_json:
            raise  # a person is told how to get push accounts
        # CONTRACT.md: `pending --json` prints a JSON array. No push account, no request: a
        # script polling a device not yet activated reads an empty list, not a failure.
        ctx.emit([], "")
        return 0
    found = answered(ctx, accounts)
    lines = [describe(c, a) for a, c in found] or ["no pending requests"]
    # A restored account receives nothing until it has a key of its own: "no pending requests"
    # alone would let the user wait for a request that can never show up here.
    usable = _usable(accounts)
    lines += [f"{shown(a.label)} (id {a.id}) cannot receive requests until it is verified: run "
              f"{command_line(f'recover {a.id}')}"
              for a in accounts if a not in usable]
    ctx.emit([_summary(c, a) for a, c in found], "\n".join(lines))
    return 0


class NumberMismatch(AuthenticatorError):
    """``approve --number NN``: not the number the browser shows, so the server refused the request."""

    exit_code = 26


def _answer_document(result: dict, full_id: str, account: Account) -> dict:
    """``--json`` of approve/deny: the server's answer, with the app's own ``id`` and ``account`` last,
    so that the server cannot name another request or account in what a script reads."""
    return {**result, "id": full_id, "account": account.id}


# The status a decision records (an approval with the wrong number records "denied").
DECIDED = {"approve": "approved", "deny": "denied", "fraud": "fraud"}


def _answer(ctx, challenge_id: str, decision: str, number=None) -> int:
    account, full_id = resolve(ctx, push_accounts(ctx), challenge_id)
    result = client_for(account).answer(full_id, decision, number)
    if decision == "approve" and result.get("status") != "approved":
        # A failure like any other: one line on stderr, its own status. With --json the server's
        # answer is still the document on stdout (its "reason" says why).
        if ctx.as_json:
            ctx.emit(_answer_document(result, full_id, account), "")
        if result.get("reason") == "wrong_number":
            raise NumberMismatch(f"the number did not match: request {full_id} was refused and counts as a "
                                 "denial (that login sends no further push: start the sign-in again)")
        if result.get("already_counted"):  # another answer of this device's counted (a denial)
            raise ChallengeUnavailable(f"request {full_id} was already answered from this device "
                                       f"({result.get('status')}): that answer counted")
        raise ProtocolError(f"the server did not approve request {full_id} "
                            f"(status {result.get('status')!r}, reason {result.get('reason')!r})")
    if decision != "approve" and result.get("already_counted") and result.get("status") != DECIDED[decision]:
        # What counted is another answer of this device's than this one (approved, say): not this.
        if ctx.as_json:
            ctx.emit(_answer_document(result, full_id, account), "")
        raise ChallengeUnavailable(f"request {full_id} was already answered from this device "
                                   f"({result.get('status')}): that answer counted")
    ctx.done = "the answer reached the server"
    ctx.emit(_answer_document(result, full_id, account), result_line(result, full_id))
    return 0


def cmd_approve(ctx, args) -> int:
    number = (args.number or "").strip()
    if not number.isdigit() or not number.isascii():
        raise AuthenticatorError("--number must be the digits shown in the browser")
    return _answer(ctx, args.id, "approve", number)


def cmd_deny(ctx, args) -> int:
    return _answer(ctx, args.id, "fraud" if args.fraud else "deny")


def _ask(ctx, challenge: dict, account: Account) -> int:
    """Interactive answer for one request; returns 0 when answered or skipped."""
    print(printable(describe(challenge, account)), file=ctx.out)
    prompt = ("  type the number shown in the browser to approve, 'n' to deny, 'f' to deny and report fraud, "
              "Enter to skip: ")
    print(prompt, end="", file=ctx.out, flush=True)
    line = read_line(sys.stdin)  # "" also when there is no stdin at all
    if not line:
        raise EOFError
    reply = line.strip().lower()
    if not reply:
        print("  skipped", file=ctx.out)
        return 0
    if reply in ("n", "f"):
        decision, number = ("deny" if reply == "n" else "fraud"), None
    elif reply.isdigit() and reply.isascii():
        decision, number = "approve", reply
    else:
        print("  not a number; skipped", file=ctx.out)
        return 0
    try:
        result = client_for(account).answer(challenge["id"], decision, number)
    except ChallengeUnavailable as exc:
        print(f"  {shown(exc)}", file=ctx.out)
        return 0
    except SERVER_FAILURES as exc:  # gone since it sent the request: watch goes on with the others
        ctx.warn(f"request {challenge['id']} not answered: {exc}")
        return 0
    print("  " + result_line(result, challenge["id"]), file=ctx.out, flush=True)
    return 0


def cmd_watch(ctx, args) -> int:
    """Long-poll (one account) or poll every 2 s (several), ask about each new request once.

    No server answering the first round is an error, as for ``pending``; after that a server that
    cannot be asked is a warning (once per failure, again if it changes) and watching goes on."""
    accounts = _usable(push_accounts(ctx))
    if not accounts:
        raise AuthenticatorError("no push account can approve on this device (restored accounts need recover)")
    seen, failing, started = set(), {}, False
    print(f"watching {len(accounts)} push account(s); Ctrl-C to stop", file=ctx.out, flush=True)
    try:
        while True:
            wait = WATCH_WAIT if len(accounts) == 1 else 0
            found, failed = collect(accounts, wait)
            if not started:
                ensure_some_answered(failed, len(accounts))
                started = True
            for account, error in failed:
                if failing.get(account.id) != str(error):
                    ctx.warn(skipped(account, error) + "; still watching")
            failing = {account.id: str(error) for account, error in failed}
            asked = False
            for account, challenge in found:
                if challenge["id"] not in seen:
                    seen.add(challenge["id"])
                    asked = True
                    _ask(ctx, challenge, account)
            if len(accounts) > 1:
                time.sleep(2)
            elif not asked:
                time.sleep(1)  # only requests already skipped are pending: the long-poll returns at once
    except EOFError:
        return 0
