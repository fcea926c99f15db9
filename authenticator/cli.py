"""``idp-authenticator``: argparse front end over a table of small command functions.

Each command is ``def cmd_x(ctx: Context, args) -> int`` registered in
``COMMANDS``; adding a command (the push work: ``pending``, ``approve``, ...)
means writing one function and replacing its ``not_available_yet`` entry.
User mistakes raise :class:`AuthenticatorError` and become one line on stderr
with that error's exit status; anything else is a bug and shows a traceback.
Usage mistakes are one line too (status 2, as argparse has it); ``--help`` is
where the full usage is.
"""

import argparse
import contextlib
import errno
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TextIO

from authenticator import clock, recover, totp
from authenticator.accounts import ACTIVE, PUSH, Account, find_account
from authenticator.backup import service as backup_service
from authenticator.backup.storage import DirectoryStorage
from authenticator.errors import AuthenticatorError, BackupReplaced, BackupWouldEmpty, NotAvailableYet, OutputLost
from authenticator.home import resolve_home
from authenticator.intake import PendingAccount, account_from_input
from authenticator.push import commands as push_commands
from authenticator.secret_input import SecretSource, passphrase_source, recovery_secret_source
from authenticator.store import Vault, locked
from authenticator.terminal import PROG, command_line, one_line, printable, shown, suggest_home, warn


@dataclass
class Context:
    """What every command needs: where the store is, how to get secrets, how to print."""

    home: Path
    as_json: bool
    passphrase: SecretSource
    recovery_secret: SecretSource
    out: TextIO
    err: TextIO
    # What the command has done for good before its output (``"the account was saved"``): an
    # output that then cannot be written is reported as that, not as a failure to re-run
    # (a second ``add`` would only say "already exists").
    done: Optional[str] = None

    def existing_vault(self) -> Optional[Vault]:
        """The store if this home has one (asks for the passphrase), else None."""
        if not Vault.exists(self.home):
            return None
        return Vault.open(self.home, self.passphrase.get())

    @contextlib.contextmanager
    def changing_vault(self, create: bool = True) -> Iterator[Vault]:
        """Open (or create) the store under the lock, save it, then run the automatic backup."""
        if not create and not Vault.exists(self.home):
            raise AuthenticatorError("this device holds no accounts yet")
        with locked(self.home):
            vault = self.existing_vault() or Vault.create(self.home, self.passphrase.get(creating=True))
            yield vault
            vault.save()
            self.done = "the change was saved"
            self.auto_backup(vault)

    def auto_backup(self, vault: Vault) -> None:
        """The change is already saved; a failed backup warns instead of failing the command.

        So does a backup that another device has replaced since this one wrote it: it is left
        alone (the other device may hold accounts this one lacks) and the warning says how to
        take the location over; and one holding accounts while this device holds none (its user
        may be about to restore it). And so does a store that cannot be saved around the backup (a
        full disk): before the file is written nothing is lost; after it, the file's SHA-256 is
        already in the store as pending (backup.service), so it is still recognised as this
        device's own at the next backup."""
        if vault.backup is None:
            return
        try:
            backup_service.write_backup(vault, automatic=True)
        except (BackupReplaced, BackupWouldEmpty) as exc:
            self.warn(f"automatic backup skipped: {exc}")
            return
        except AuthenticatorError as exc:
            self.warn(f"automatic backup failed: {exc}")
            return
        except OSError as exc:  # saving the pending mark, before any file was written
            self.warn(f"automatic backup failed: {cannot_write(exc)}")
            return
        try:
            vault.save()
        except OSError as exc:
            self.warn(f"automatic backup written, but this device could not record it ({cannot_write(exc)}); "
                      "the next backup still recognises it as this device's own")

    def warn(self, message: str) -> None:
        warn(message, self.err)

    def emit(self, document, human: str) -> None:
        """One JSON document (json.dumps escapes every control and non-ASCII character), or the human
        text. Commands quote outside values in it with :func:`shown` (an account label from a QR code,
        a server's text); :func:`printable` then escapes any control character left except the
        layout's newlines, and undecodable bytes (a store written before intake refused them) that a
        UTF-8 stdout would refuse to print, after the change is saved."""
        text = json.dumps(document) if self.as_json else printable(human)
        try:
            if self.out is None:  # `>&-`: print() would print nothing, silently
                raise OSError(errno.EBADF, "stdout is closed")
            print(text, file=self.out)
            self.out.flush()  # (a file's buffer would fail only at exit, after the status was chosen)
        except OSError as exc:
            if self.done is None:
                raise  # nothing changed: main's "cannot write" line
            raise OutputLost(f"{self.done}, but the output could not be written ({exc.strerror or exc})") from None


def account_summary(account: Account) -> dict:
    return {"id": account.id, "issuer": account.issuer, "name": account.name,
            "type": account.type, "status": account.status}


def cmd_add(ctx: Context, args) -> int:
    """Read the input, unlock (or create) the store, then any network step (push registration), then save.

    In that order, so that a wrong passphrase (or a duplicate account) stops ``add`` before a push
    activation registers a device, and spends its one-time code, on the server. If the store still
    cannot keep a registered account, the error names the server-side device to revoke.
    """
    found = account_from_input(args.source)  # decodes and checks; sends nothing
    pending = found if isinstance(found, PendingAccount) else None
    with locked(ctx.home):
        vault = ctx.existing_vault() or Vault.create(ctx.home, ctx.passphrase.get(creating=True))
        if pending is not None:
            _refuse_duplicate(vault, pending)
        account = pending.complete() if pending is not None else found
        try:
            stored = vault.add(account)
            vault.save()
            ctx.done = "the account was saved"
        except (AuthenticatorError, OSError) as exc:
            if pending is None:
                raise
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            raise pending.not_saved(account, reason) from None
        ctx.auto_backup(vault)
    ctx.emit(account_summary(stored), f"added {shown(stored.label)} ({stored.type}, id {stored.id})")
    return 0


def _refuse_duplicate(vault: Vault, pending: PendingAccount) -> None:
    """Vault.add's duplicate check, made before the network step when the input already names the account."""
    if not pending.username:
        return  # known only from the server's answer: Vault.add checks after the registration
    for existing in vault.accounts:
        if (existing.issuer, existing.name, existing.type) == (pending.issuer, pending.username, pending.type):
            if existing.status != ACTIVE:  # restored from a backup: recover gives it its key, keeping its id
                raise AuthenticatorError(f"account {existing.label} (id {existing.id}) was restored from a backup "
                                         f"and needs verification: run "
                                         f"{command_line(f'recover {existing.id} --qr IMAGE')} (or --password) instead")
            raise AuthenticatorError(f"account {existing.label} already exists (id {existing.id}); remove it first")


def cmd_list(ctx: Context, args) -> int:
    vault = ctx.existing_vault()
    accounts = vault.accounts if vault else []
    lines = [
        f"{a.id}  {shown(a.label)}  {a.type}" + ("  (needs verification: run recover)" if a.status != ACTIVE else "")
        for a in accounts
    ]
    ctx.emit([account_summary(a) for a in accounts], "\n".join(lines) if lines else "no accounts")
    return 0


def cmd_code(ctx: Context, args) -> int:
    vault = ctx.existing_vault()
    account = find_account(vault.accounts if vault else [], args.account)
    if account.type == PUSH:
        raise AuthenticatorError(f"{account.label} is a push account; it has no codes")
    now = clock.now()
    code, expires_in = totp.code_at(account.totp, now), totp.seconds_left(account.totp, now)
    ctx.emit({"code": code, "expires_in": expires_in}, f"{code}  (valid for {expires_in}s)")
    return 0


def cmd_remove(ctx: Context, args) -> int:
    if not Vault.exists(ctx.home):
        raise AuthenticatorError(f"no account matches {args.account!r}")
    with ctx.changing_vault(create=False) as vault:
        account = find_account(vault.accounts, args.account)
        vault.remove(account)
    human = f"removed {shown(account.label)} (id {account.id})"
    if account.type == PUSH and account.push is not None and account.push.device_id:
        # Only this device forgets it: the server still lists the device (its key is gone with it).
        human += (f"; the server at {shown(account.issuer or account.push.issuer_url)} keeps this device "
                  f"registered until it is revoked there (if it is not already): remove it on your account's "
                  f"security page, or ask an administrator")
    ctx.emit(account_summary(account), human)
    return 0


def cmd_backup(ctx: Context, args) -> int:
    if (args.to or args.replace) and not args.enable:
        raise AuthenticatorError("--to and --replace go with --enable")
    if args.enable:
        if not args.to:
            raise AuthenticatorError("backup --enable needs --to DIR")
        with ctx.changing_vault() as vault:
            secret = ctx.recovery_secret.get(creating=True)
            backup_service.check_recovery_secret(secret, ctx.passphrase.get())
            settings = backup_service.enable(vault, args.to, secret, replace=args.replace)
        return _report_backup(ctx, settings, f"automatic backup enabled to {shown(settings.location)}")
    if args.now:
        with locked(ctx.home):
            vault = ctx.existing_vault()
            if vault is None:
                raise AuthenticatorError("nothing to back up: this device holds no accounts yet")
            settings = backup_service.write_backup(vault)
            ctx.done = "the backup was written"
            vault.save()
        return _report_backup(ctx, settings, f"backed up to {shown(settings.location)}")
    if args.disable:
        with ctx.changing_vault(create=False) as vault:
            vault.backup = None
        ctx.emit({"enabled": False}, "automatic backup disabled (existing backups are left in place)")
        return 0
    vault = ctx.existing_vault()
    settings = vault.backup if vault else None
    if settings is None:
        ctx.emit({"enabled": False}, "automatic backup is off")
        return 0
    return _report_backup(ctx, settings,
                          f"automatic backup to {shown(settings.location)}, last at {settings.last_backup_at}")


def _report_backup(ctx: Context, settings, human: str) -> int:
    ctx.emit({"enabled": True, "location": settings.location, "last_backup_at": settings.last_backup_at}, human)
    return 0


def cmd_restore(ctx: Context, args) -> int:
    # Check everything before touching the home, so a failure leaves a fresh device fresh.
    backup_service.ensure_empty(ctx.existing_vault())
    backup = backup_service.read_backup(DirectoryStorage(args.source), ctx.recovery_secret.get)
    with locked(ctx.home):
        vault = ctx.existing_vault() or Vault.create(ctx.home, ctx.passphrase.get(creating=True))
        restored = backup_service.restore_into(vault, backup.accounts)
        vault.save()
        ctx.done = "the accounts were restored"
        ctx.auto_backup(vault)
    waiting = sum(1 for a in restored if a.status != ACTIVE)
    human = f"restored {len(restored)} account(s) from the backup {backup_service.written_at(backup)}"
    if waiting:
        human += f"; {waiting} push account(s) need verification: run {command_line('recover ACCOUNT')}"
    if vault.backup is None:
        # The backup settings live in the lost device's store, not in the backup: without this the
        # new phone would go on unbacked-up, its owner believing otherwise.
        human += (f"; automatic backup is off on this device: "
                  f"{command_line(f'backup --enable --to {shown(shlex.quote(args.source))}')}")
    ctx.emit({"created_at": backup.created_at, "accounts": [account_summary(a) for a in restored]}, human)
    return 0


def not_available_yet(ctx: Context, args) -> int:
    raise NotAvailableYet(f"{args.command} is not available yet")


COMMANDS: dict[str, Callable[[Context, argparse.Namespace], int]] = {
    "add": cmd_add,
    "list": cmd_list,
    "code": cmd_code,
    "remove": cmd_remove,
    "pending": push_commands.cmd_pending,
    "approve": push_commands.cmd_approve,
    "deny": push_commands.cmd_deny,
    "watch": push_commands.cmd_watch,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "recover": recover.cmd_recover,
}


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, like every other error; the usage itself is in --help."""

    def error(self, message: str):
        self.exit(2, one_line(f"{self.prog}: error: {message}; see '{self.prog} --help'") + "\n")


def _add_global_options(parser: argparse.ArgumentParser, default) -> None:
    """Global options work before or after the command; subcommands use SUPPRESS
    so that their (absent) defaults do not overwrite what was given up front."""
    parser.add_argument("--home", metavar="DIR", default=default(None),
                        help="app home (default: $XDG_DATA_HOME/idp-authenticator, or ~/.local/share/idp-authenticator)")
    parser.add_argument("--json", action="store_true", default=default(False), help="print one JSON document")
    parser.add_argument("--passphrase-file", metavar="F", default=default(None),
                        help="read the local passphrase from F "
                             "(else $IDP_AUTHENTICATOR_PASSPHRASE, else asked on a terminal)")
    parser.add_argument("--recovery-secret-file", metavar="F", default=default(None),
                        help="read the backup recovery secret from F "
                             "(else $IDP_AUTHENTICATOR_RECOVERY_SECRET, else asked on a terminal)")


# How `code`, `remove` and `recover` find an account (authenticator.accounts.find_account).
ACCOUNT_HELP = "the account's id (see list), its ISSUER:NAME, or a NAME no other account has"


def build_parser() -> argparse.ArgumentParser:
    # Subparsers are made with the same class as their parent, so their errors are one line too.
    parser = OneLineErrorParser(prog=PROG, description="Companion authenticator for the idp provider.")
    _add_global_options(parser, lambda value: value)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, lambda value: argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    command("add", "add a TOTP account (otpauth:// URI) or a push account (idp-push:// activation URI, or "
                   "an admin's idp-recovery:// recovery QR code on a new phone without a backup), given as the "
                   "URI or a QR code image of it").add_argument(
        "source", metavar="QR_IMAGE|URI")
    command("list", "list accounts")
    command("code", "print the current code of a TOTP account").add_argument("account", metavar="ACCOUNT",
                                                                             help=ACCOUNT_HELP)
    command("remove", "remove an account").add_argument("account", metavar="ACCOUNT", help=ACCOUNT_HELP)
    command("pending", "list push login requests waiting for an answer")
    approve = command("approve", "approve a push login request")
    approve.add_argument("id", metavar="ID")
    approve.add_argument("--number", required=True, metavar="NN", help="the number the browser shows")
    deny = command("deny", "deny a push login request")
    deny.add_argument("id", metavar="ID")
    deny.add_argument("--fraud", action="store_true", help="report the request as fraud")
    command("watch", "answer push login requests as they arrive")
    backup = command("backup", "encrypted backup of the accounts (no option: show the setting)")
    mode = backup.add_mutually_exclusive_group()
    mode.add_argument("--enable", action="store_true", help="back up automatically after every change")
    mode.add_argument("--now", action="store_true", help="write a backup now")
    mode.add_argument("--disable", action="store_true", help="stop automatic backups")
    backup.add_argument("--to", metavar="DIR", help="backup directory (with --enable)")
    backup.add_argument("--replace", action="store_true",
                        help="overwrite a backup already in DIR that is not this device's (with --enable)")
    command("restore", "restore accounts from a backup onto this (empty) device").add_argument(
        "--from", dest="source", required=True, metavar="DIR", help="the backup directory (`backup --to`)")
    recover = command("recover", "give a restored push account a new device credential")
    recover.add_argument("account", metavar="ACCOUNT", help=ACCOUNT_HELP)
    how = recover.add_mutually_exclusive_group(required=True)
    how.add_argument("--qr", metavar="IMAGE", help="a recovery QR code issued by an admin (a new phone holding no "
                                                   "backup adds it instead: add IMAGE)")
    how.add_argument("--password", action="store_true",
                     help="the password, then the code e-mailed to the account (lines 1 and 2 of stdin, a wrong "
                          "code another line, or asked on a terminal); the account's organization decides whether "
                          "it may")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    _tolerant_stdio()
    parser = build_parser()
    args = parser.parse_args(argv)
    _refuse_empty_paths(parser, args)
    suggest_home(args.home)
    try:
        ctx = Context(
            home=resolve_home(args.home),
            as_json=args.json,
            passphrase=passphrase_source(args.passphrase_file),
            recovery_secret=recovery_secret_source(args.recovery_secret_file),
            out=sys.stdout,
            err=sys.stderr,
        )
        return COMMANDS[args.command](ctx, args)
    except AuthenticatorError as exc:
        return fail(str(exc), exc.exit_code)
    except OSError as exc:  # the disk, not the user: full, read-only, gone (the store's files are replaced atomically)
        return fail(cannot_write(exc), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


# Options naming a path, and what they name. An empty value (a script's unset variable, `--home "$PHONE"`)
# is a mistake, not a choice: read as "not given" it meant the default home or the environment's secret,
# and as a path the current directory, so the command went on with a store or a folder nobody named.
# (`restore --from` is the attribute `source`, as `add`'s QR_IMAGE|URI is: None stands for any command.)
_PATH_OPTIONS = ((None, "home", "--home", "a directory"), ("restore", "source", "--from", "a directory"),
                 ("recover", "qr", "--qr", "an image or a URI"),
                 (None, "passphrase_file", "--passphrase-file", "a file"),
                 (None, "recovery_secret_file", "--recovery-secret-file", "a file"))


def _refuse_empty_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for command, attribute, option, what in _PATH_OPTIONS:
        if command in (None, args.command) and getattr(args, attribute, None) == "":
            parser.error(f"{option} must name {what} (it is empty)")


def _tolerant_stdio() -> None:
    """Print what the stream's encoding cannot hold as escapes (``Caf\\xe9``) instead of failing: with an
    ASCII stdout (``PYTHONIOENCODING=ascii``) an account label like "Café" was a traceback
    (after the change was saved). Before parsing, so that usage errors quoting an argument are covered."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # None: closed (<&- for stdout) or replaced
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def cannot_write(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


def fail(message: str, exit_code: int) -> int:
    """Report a failure as the contract asks: one line on stderr, whatever the message echoes."""
    print(one_line(f"{PROG}: {message}"), file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
