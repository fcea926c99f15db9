"""The `idp` command: operators' door to the database (CONTRACT.md, "The `idp` command").

Rules every command keeps:
- exit 0 on success; on bad input one line on stderr (`idp: error: ...`) and a
  non-zero exit, never a traceback;
- validate everything first, then write in one transaction: nothing half-created;
- passwords and secrets come from stdin, never from argv;
- security-relevant changes are audited with `actor="cli"` in the same transaction.

The app is built through `idp.app.create_app()` (the one door), lazily, so that
`idp --help` works without a database, and `--help` of any command without valid
settings. Commands that need it use Flask's `with_appcontext`, which plugin commands
may use too. Settings are checked as the app is built: a bad one is one line,
`idp: error: configuration: ...`, whether idp.config or a factor plugin refuses it.
Command groups owned by other packages (`idp policy`, plugin commands under
`idp factor`) are imported only when used, so a half-written or missing package
never breaks the others.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext

from idp.security.text import storable  # (stdlib only: cheap before any command)


# Top-level command groups that live in other packages: name -> (module, attribute).
# Imported on first use; if the module is missing the command is simply absent.
MOUNTED_GROUPS = {
    "policy": ("idp.policy.cli", "policy"),
    # `idp recovery-qr issue ...` (CONTRACT.md): the qr_recovery plugin's commands, found through
    # the factor registry. Plugin commands that belong under `idp factor NAME` come from the
    # factor registry too (FactorGroup).
    "recovery-qr": ("idp.factors.recovery_cli", "recovery_qr"),
}
# Groups whose subcommands expect an app context already pushed.
_APP_GROUPS = set(MOUNTED_GROUPS) | {"factor"}


class CliError(click.ClickException):
    """Bad input or a refused operation: one line on stderr, exit status 1."""


# --------------------------------------------------------------------------- input checks

def normalise_email(raw: str) -> str:
    """Strip and lowercase an e-mail address; idp.users.AccountRefused unless it looks deliverable
    (main prints it as any refusal)."""
    from idp.users import normalised_email

    return normalised_email(raw)


def check_name(raw: str, what: str, max_length: int = 200) -> str:
    from idp.security.text import name_problem

    name = (raw or "").strip()
    problem = name_problem(name, max_length)
    if problem:
        raise CliError(f"{what} {problem}")
    return name


def read_secret_from_stdin(what: str = "password", confirm: bool = True) -> str:
    """Read a password from stdin: the first line (prompted twice on a terminal)."""
    stream = sys.stdin
    if stream is None:  # `<&-`: Python has no sys.stdin at all
        raise CliError(f"stdin is closed: write the {what} on stdin")
    if stream.isatty():
        value = click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm, err=True)
    else:
        try:  # UTF-8 whatever the locale says (click's get_text_stream did the same; it is deprecated)
            value = stream.buffer.readline().decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise CliError("stdin is not UTF-8 text") from None
    if not value:
        raise CliError(f"no {what} on stdin")
    return value


# A JWK Set of the most keys a client may have (10 RSA keys of 4096 bits) is about 9 KB.
MAX_JWKS_BYTES = 64 * 1024


def read_input(path: str, limit: int, *, label: str) -> bytes:
    """At most `limit` + 1 bytes of the file `path`, or of stdin for "-" (the caller tells a file
    over `limit` by its length); `label` names the input in the one-line errors."""
    try:
        if path == "-":
            if sys.stdin is None:  # `<&-` (click's get_binary_stream would raise a RuntimeError)
                raise CliError(f"{label}: stdin is closed, nothing to read")
            return click.get_binary_stream("stdin").read(limit + 1)
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except OSError as error:
        raise CliError(f"cannot read {label}: {error.strerror or error}") from None


def read_jwks(path: str | None) -> str | None:
    """The text of a JWK Set (or of a PEM public key) from a file, or stdin for "-" (None when no
    --jwks was given); the clients module checks what it says."""
    if path is None:
        return None
    data = read_input(path, MAX_JWKS_BYTES, label=f"--jwks {path}")
    if len(data) > MAX_JWKS_BYTES:
        raise CliError(f"--jwks {path} is larger than {MAX_JWKS_BYTES // 1024} KiB: not a client's JWK Set")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"--jwks {path} is not UTF-8 text") from None


def read_import_file(path: str, limit: int) -> bytes:
    """A file's bytes, or stdin's for "-", at most `limit` of them."""
    data = read_input(path, limit, label=path)
    if len(data) > limit:
        raise CliError(f"{path} is larger than {limit // (1024 * 1024)} MiB")
    return data


def _json_text(document: Any) -> str:
    return json.dumps(document, indent=None, sort_keys=True, default=str)


def emit_json(document: Any) -> None:
    click.echo(_json_text(document))


def emit_listing(documents: list[dict], as_json: bool, lines_of, empty: str) -> None:
    """What a `list` command prints: one JSON array with --json; else each document's text
    lines (`lines_of(document)`), or `empty` when there is none."""
    if as_json:
        emit_json(documents)
        return
    if not documents:
        click.echo(empty)
    for document in documents:
        for line in lines_of(document):
            click.echo(line)


# --------------------------------------------------------------------------- database operations
# Each adds rows to the session (validated first) and records the audit event; the
# command commits once. `idp demo seed` reuses them in a single transaction.

def _session():
    from idp.db import db

    return db.session


def find_org(name: str):
    from sqlalchemy import select

    from idp.models import Organization

    org = _session().scalar(select(Organization).where(Organization.name == name.strip()))
    if org is None:
        raise CliError(f"unknown organization {name.strip()!r}")
    return org


def find_user(email: str):
    from sqlalchemy import select

    from idp.models import User

    return _session().scalar(select(User).where(User.email == email))


def existing_user(raw_email: str):
    """The user with this e-mail address, else CliError."""
    email = normalise_email(raw_email)
    found = find_user(email)
    if found is None:
        raise CliError(f"no user with e-mail {email!r}")
    return found


def organizations_with_user_counts() -> list[dict]:
    """Every organization, by name, with its number of users: one statement."""
    from sqlalchemy import func, select

    from idp.models import Organization, User

    rows = _session().execute(
        select(Organization.id, Organization.name, Organization.require_2fa, func.count(User.id))
        .outerjoin(User, User.org_id == Organization.id)
        .group_by(Organization.id, Organization.name, Organization.require_2fa).order_by(Organization.name))
    return [{"id": id_, "name": name, "users": count, "require_2fa": bool(require_2fa)}
            for id_, name, require_2fa, count in rows]


def users_of(org) -> Iterator:
    """The organization's users in the order they were created, with the 2FA status the policy
    computes: the admin pages' query (idp.admin.queries), a large page at a time."""
    from idp.admin.queries import users_page
    from idp.policy.status import today_utc

    today, after = today_utc(), None
    while True:
        page = users_page(org, today=today, after=after, limit=1000)
        yield from page.rows
        if page.next_after is None:
            return
        after = page.next_after


def add_org(name: str):
    from sqlalchemy import select

    from idp import audit
    from idp.models import Organization

    name = check_name(name, "the organization name")
    if _session().scalar(select(Organization.id).where(Organization.name == name)) is not None:
        raise CliError(f"organization {name!r} already exists")
    org = Organization(name=name)
    _session().add(org)
    _session().flush()
    audit.record("org.created", org_id=org.id, actor="cli", details={"name": name})
    return org


def add_user(org_name: str, email: str, password: str | None, name: str = "", admin: bool = False,
             hashed: str | None = None):
    from idp import users

    org = find_org(org_name)
    return users.create(org.id, email, password, name=name, role="admin" if admin else "user", actor="cli",
                        hashed=hashed)


def commit() -> None:
    """Commit the command's one transaction; a constraint hit by a concurrent writer is bad input too."""
    from sqlalchemy.exc import IntegrityError

    try:
        _session().commit()
    except IntegrityError as exc:
        _session().rollback()
        raise CliError(f"conflicting change, nothing written: {str(exc.orig).splitlines()[0]}") from None


# --------------------------------------------------------------------------- the command tree

class RootGroup(click.Group):
    """`idp`: built-in commands plus groups mounted from other packages on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(name for name in MOUNTED_GROUPS if self._mounted(name, quiet=True) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in MOUNTED_GROUPS:
            command = self._mounted(name, quiet=False)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_HELP_ONLY] = _asks_for_help_only(args, ctx.help_option_names)
        return super().parse_args(ctx, args)

    @staticmethod
    def _mounted(name: str, quiet: bool) -> click.Command | None:
        module_name, attribute = MOUNTED_GROUPS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # not written yet: the command does not exist
            if quiet:
                return None
            raise CliError(f"`idp {name}` is unavailable: {exc}") from None
        except Exception as exc:  # a broken module must not take the other commands down
            if quiet:
                return None
            raise CliError(f"`idp {name}` is unavailable: {type(exc).__name__}: {exc}") from None
        return getattr(module, attribute, None)


_HELP_ONLY = "idp.help_only"


def _asks_for_help_only(args: list[str], help_options: list[str]) -> bool:
    """Whether `idp ARGS` only prints help: a help option anywhere (before `--`), or a command
    group named alone (`idp policy`), which click answers with its help. Help needs no app, so
    it works while the configuration is broken."""
    words = args[:args.index("--")] if "--" in args else args
    return any(word in help_options for word in words) or len(words) == 1


def _create_app():
    from idp.app import create_app
    from idp.config import ConfigError
    from idp.factors.errors import FactorLoadError, FactorMisconfigured
    from idp.notify.factory import SENDER_WARNING_LOGGER

    context = click.get_current_context(silent=True)
    serving = context is not None and context.find_root().invoked_subcommand == "serve"
    if not serving:  # a server's warning at start (a sender no relay delivers): noise after any other command
        logging.getLogger(SENDER_WARNING_LOGGER).setLevel(logging.ERROR)
    try:
        app = create_app()
    except FactorMisconfigured as exc:
        # A factor plugin refused its settings (factors.NAME.*) as the app started.
        raise ConfigError(str(exc)) from exc
    except FactorLoadError as exc:  # a plugin that cannot be imported: its message names it
        raise CliError(str(exc)) from exc
    if not serving:
        # The audit events' log lines are a server's (for its log pipeline): after any other
        # command they would be noise on stderr, where the command writes its one-line errors.
        # The events themselves are written to the table as ever.
        logging.getLogger("idp.audit").setLevel(logging.WARNING)
    _require_a_schema(app)
    return app


def _require_a_schema(app) -> None:
    """Every command but `idp init` works on an initialised database. Run elsewhere (cron's empty
    environment, a forgotten IDP_CONFIG) a command opened a new empty SQLite file in the instance
    folder and failed on "no such table": name the database and the way out instead."""
    context = click.get_current_context(silent=True)
    if context is None or context.find_root().invoked_subcommand == "init":
        return
    from sqlalchemy import inspect

    from idp.db import db

    with app.app_context():
        if not inspect(db.engine).has_table("users"):
            url = db.engine.url.render_as_string(hide_password=True)
            raise CliError(f"the database {url} has no schema: run `idp init` first, or point IDP_DATABASE_URL "
                           "(or the IDP_CONFIG file) at the servers' database")


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idp", prog_name="idp")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate the identity provider. Settings come from config/default.toml, then the file named
    by IDP_CONFIG, then IDP_* variables (see README, "Configuration")."""
    ctx.obj = ScriptInfo(create_app=_create_app, set_debug_flag=False)
    # Alembic narrates every migration at INFO; an operator's terminal wants the result only.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if ctx.invoked_subcommand in _APP_GROUPS and not ctx.meta.get(_HELP_ONLY):
        # Commands from other packages may expect an app context, as Flask's own CLI gives.
        ctx.with_resource(ctx.obj.load_app().app_context())


@cli.command()
@with_appcontext
def init() -> None:
    """Migrate the database to the latest schema and create signing keys if none; repair the
    users' second-factor counts after `factors.disabled` changed. Idempotent."""
    from idp.db import db
    from idp.factors.store import recount_second_factors
    from idp.oidc.keys import ensure_signing_key
    from idp.schema import UnknownRevision, differences, upgrade

    try:
        revision = upgrade(db.engine)
    except UnknownRevision as exc:
        # A newer build migrated this database (an upgrade rolled back), or another application's
        # Alembic history lives in it: migrating either way would be a guess.
        raise CliError(f"the database is at revision {exc.revision!r}, which this build of idp does not know "
                       "(made by a newer version?): nothing changed; run the version that made it, or point "
                       "IDP_DATABASE_URL at this version's database") from None
    stale = differences(db.engine)
    if stale:
        # Before the first release the one revision is rewritten when the models change, so a
        # database made by an earlier build sits "at head" without the newest columns: every
        # request touching them would be a 500. Say so now, once.
        what = _schema_difference(stale[0])
        raise CliError(f"the database at revision {revision} was made by an earlier build of this schema "
                       f"({len(stale)} difference(s), e.g. {what}): recreate it (README, \"Database schema\")")
    _refuse_unopenable_secrets()
    created = ensure_signing_key(actor="cli") or []
    if not isinstance(created, list):
        created = [created]
    click.echo(f"database at revision {revision}")
    repaired = recount_second_factors()
    if repaired:  # factors.disabled changed since: who counts as protected changed with it
        click.echo(f"second-factor counts repaired for {repaired} user(s)")
    if created:
        for key in created:
            click.echo(f"created signing key {key.kid} ({key.alg})")
    else:
        click.echo("signing keys present")


def _schema_difference(diff) -> str:
    """One of Alembic's compare_metadata differences, readably: "add_column users.tokens_valid_after"."""
    if isinstance(diff, tuple) and diff[0] in ("add_column", "remove_column"):
        return f"{diff[0]} {diff[2]}.{diff[3].name}"
    if isinstance(diff, tuple) and diff[0] in ("add_table", "remove_table", "add_index", "remove_index"):
        return f"{diff[0]} {diff[1].name}"
    if isinstance(diff, tuple) and diff[0] == "modify_sqlite_autoincrement":  # (idp.schema's own)
        return f"{diff[0]} {diff[1]}"
    return (diff[0][0] if isinstance(diff, list) and diff and isinstance(diff[0], tuple) else str(diff))[:80]


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--debug", is_flag=True, help="Reload on code changes and show the debugger (never in production).")
@with_appcontext
def serve(host: str, port: int, debug: bool) -> None:
    """Run the development server (production: gunicorn "idp.app:create_app()")."""
    app = current_app._get_current_object()
    if debug and app.extensions["idp.settings"].production:
        raise CliError("--debug is refused when IDP_ENV=production")
    _refuse_unopenable_secrets()
    warning = app.extensions["idp.factors"].rp_id_warning()
    if warning:
        click.echo(f"idp: warning: {warning}", err=True)
    app.run(host=host, port=port, debug=debug, use_reloader=debug, threaded=True,
            request_handler=_request_handler_without_access_lines())


def _refuse_unopenable_secrets() -> None:
    """One line, rather than a 500 on every token and JWKS request: the encryption keys must
    open the signing keys they sealed (security.encryption_keys lost one, or names another).
    The same for the second factors' secrets, rather than a refused login for each user whose
    TOTP seed that key sealed.
    (Both callers know the schema is there: `init` just migrated, `serve` checked it.)"""
    from idp.factors.store import unopenable_secrets
    from idp.oidc import keys
    from idp.security.secrets import DEV_KEY_HINT

    def fix(sealers) -> str:
        # Rows of "dev" that the ring's "dev" does not open: another secret key than theirs.
        ring = current_app.extensions["idp.settings"].get("security.encryption_keys") or ()
        if "dev" in sealers and ("dev" in ring or not ring):
            return DEV_KEY_HINT
        return "configure the key that sealed them"

    lost = keys.unopenable_by_sealer()
    if lost:
        kids = [kid for sealer in sorted(lost) for kid in lost[sealer]]
        raise CliError(f"the encryption keys (security.encryption_keys) cannot open signing key(s) "
                       f"{', '.join(kids)}: {fix(lost)} (README, \"Rolling in a new encryption key\")")
    sealed_by = unopenable_secrets()
    if sealed_by:
        what = ", ".join(f"{count} sealed with key {key_id!r}" for key_id, count in sorted(sealed_by.items()))
        raise CliError(f"the encryption keys (security.encryption_keys) cannot open second-factor secrets ({what}): "
                       f"{fix(sealed_by)} (README, \"Rolling in a new encryption key\")")


def _request_handler_without_access_lines() -> type:
    """werkzeug's request handler, minus its own access lines: the app's `idp.access` logger already
    writes one per request (JSON, /healthz at DEBUG), which werkzeug's would repeat at INFO with
    terminal colour codes. Its errors and the start-up banner are still logged."""
    from werkzeug.serving import WSGIRequestHandler  # only `idp serve` needs the server

    class RequestHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return RequestHandler


# --- organizations

@cli.group()
def org() -> None:
    """Organizations."""


@org.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the organization as JSON.")
@with_appcontext
def org_add(name: str, as_json: bool) -> None:
    """Create an organization called NAME."""
    row = add_org(name)
    commit()
    if as_json:
        emit_json({"id": row.id, "name": row.name})
    else:
        click.echo(f"created organization {row.name!r} (id {row.id})")


@org.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_appcontext
def org_list(as_json: bool) -> None:
    """List the organizations: name, id, number of users, whether 2FA is required for everyone."""
    emit_listing(organizations_with_user_counts(), as_json, lambda doc: [
        f"{doc['name']}  (id {doc['id']})  {doc['users']} user(s)  "
        f"2FA required for everyone: {'on' if doc['require_2fa'] else 'off'}"],
        empty="no organizations: create one with `idp org add`")


# --- users

@cli.group()
def user() -> None:
    """Users."""


@user.command("add")
@click.option("--org", "org_name", required=True, help="Name of the user's organization.")
@click.option("--email", required=True, help="E-mail address, the login name (normalised to lower case).")
@click.option("--name", default="", help="Display name.")
@click.option("--admin", is_flag=True, help="Make the user an administrator of the organization.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (or --invite).")
@click.option("--invite", is_flag=True, help="No password: e-mail an invitation to choose one (or --password-stdin).")
@click.option("--print-link", is_flag=True, help="With --invite: print the invitation's link instead of mailing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the user as JSON.")
@with_appcontext
def user_add(org_name: str, email: str, name: str, admin: bool, password_stdin: bool, invite: bool, print_link: bool,
             as_json: bool) -> None:
    """Create a user with a password read from stdin, or invite them by e-mail to choose one."""
    from idp import users

    # Validate the cheap things before reading stdin, so a typo does not eat the password.
    find_org(org_name)
    email = normalise_email(email)
    if password_stdin == invite:
        raise CliError("pass exactly one of --password-stdin (a password on stdin) and --invite (an e-mailed link)")
    if print_link and not invite:
        raise CliError("--print-link goes with --invite")
    if invite:
        _invitations_on()
        row = add_user(org_name, email, None, name=name, admin=admin)
        delivery = _invitation(row, print_link)
        commit()
        link = _send_invitation(delivery, print_link)
        if as_json:
            emit_json({"id": row.id, "sub": row.public_id, "email": row.email, "name": row.name,
                       "org": org_name.strip(), "role": row.role, **_invitation_json(delivery, link)})
        else:
            click.echo(f"created {row.role} {row.email} in {org_name.strip()!r} (sub {row.public_id})")
            _echo_invitation(row.email, delivery, link)
        return
    # No transaction held while stdin is read (the operator may be typing) nor through the hash:
    # the command's one transaction begins after them, its checks again, its change and its event.
    _session().rollback()
    password = read_secret_from_stdin()
    row = add_user(org_name, email, password, name=name, admin=admin, hashed=users.hashed_if_acceptable(password))
    commit()
    if as_json:
        emit_json({"id": row.id, "sub": row.public_id, "email": row.email, "name": row.name,
                   "org": org_name.strip(), "role": row.role})
    else:
        click.echo(f"created {row.role} {row.email} in {org_name.strip()!r} (sub {row.public_id})")


@user.command("invite")
@click.option("--email", help="The user's e-mail address.")
@click.option("--org", "org_name", help="With --all-without-password: the organization.")
@click.option("--all-without-password", is_flag=True,
              help="Invite every enabled user of --org who has no password (after `idp user import`).")
@click.option("--print-link", is_flag=True, help="Print each link instead of mailing it (no mail relay).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array: email, expires_at (and link).")
@with_appcontext
def user_invite(email: str | None, org_name: str | None, all_without_password: bool, print_link: bool,
                as_json: bool) -> None:
    """E-mail a user an invitation: a link to choose their password, which also confirms their address.
    For a user who has no password or never signed in; a new invitation kills the earlier one."""
    from sqlalchemy import select

    from idp.models import User

    if bool(email) == bool(all_without_password) or bool(org_name) != bool(all_without_password):
        raise CliError("pass either --email EMAIL, or --org ORG --all-without-password")
    _invitations_on()
    if email:
        targets = [existing_user(email)]
    else:
        org = find_org(org_name)
        targets = list(_session().scalars(select(User).where(User.org_id == org.id, User.password_hash.is_(None),
                                                             User.disabled.is_(False)).order_by(User.id)))
    documents, failed = [], 0
    for target in targets:
        try:
            delivery = _invitation(target, print_link)
        except CliError as exc:
            if email:
                raise
            _session().rollback()
            click.echo(f"idp: warning: {exc}", err=True)
            failed += 1
            continue
        commit()
        try:
            link = _send_invitation(delivery, print_link)
        except CliError as exc:
            if email:
                raise
            click.echo(f"idp: warning: {exc}", err=True)
            failed += 1
            continue
        documents.append({"email": delivery.to, **_invitation_json(delivery, link)})
        if not as_json:
            _echo_invitation(delivery.to, delivery, link)
    if as_json:
        emit_json(documents)
    elif not targets:
        click.echo(f"no enabled user without a password in {org_name.strip()!r}")
    if failed:
        raise CliError(f"{failed} of {len(targets)} user(s) not invited (see the warnings above)")


def _invitations_on() -> None:
    from idp import password_reset

    if not password_reset.current_settings().enabled:
        raise CliError("invitations need password reset links, which are off ([password_reset] enabled = false)")


_INVITE_REFUSALS = {
    "disabled": "the account is disabled",
    "signed_in": "has signed in with a password already: they can use \"Forgot your password?\", "
                 "or set one with idp user set-password",
    "rate_limited": "too many links sent to this account in the last hour ([password_reset] per_hour): try later",
    "links_off": "password reset links are off ([password_reset] enabled = false)",
}


def _invitation(target, print_link: bool):
    """An invitation for `target` in the command's transaction (the caller commits), else CliError.
    A printed link (`print_link`) proves no address when used: the operator hands it over."""
    from idp import invitations

    try:
        return invitations.invite(target, actor="cli", mailed=not print_link)
    except invitations.InviteRefused as exc:
        raise CliError(f"{target.email} cannot be invited: {_INVITE_REFUSALS[exc.reason]}") from None


def _send_invitation(delivery, print_link: bool) -> str | None:
    """Mail the committed invitation, or (--print-link) return its link to print; CliError when the
    relay refused it (the link then dies, audited as password_reset.mail_failed)."""
    from flask import current_app

    from idp import password_reset

    if print_link:
        return delivery.link
    if not password_reset.deliver(current_app._get_current_object(), delivery):
        raise CliError(f"the invitation to {delivery.to} could not be mailed (see [mail]); its link no longer "
                       "works: try again, or use --print-link")
    return None


def _invitation_json(delivery, link: str | None) -> dict:
    from idp import invitations
    from idp.factors.cli import iso_utc

    return {"expires_at": iso_utc(invitations.expires_at(delivery)), **({"link": link} if link else {})}


def _echo_invitation(email: str, delivery, link: str | None) -> None:
    from idp import invitations
    from idp.factors.cli import iso_utc

    expires = iso_utc(invitations.expires_at(delivery))
    if link:
        click.echo(f"invitation for {email}, valid until {expires} (not mailed): {link}")
    else:
        click.echo(f"invitation mailed to {email}, valid until {expires}")


@user.command("set-password")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin (required).")
@with_appcontext
def user_set_password(email: str, password_stdin: bool) -> None:
    """Give a user a new password (read from stdin); signs them out everywhere."""
    from idp import users

    existing_user(email)  # before reading stdin, so a typo does not eat the password
    if not password_stdin:
        raise CliError("a password is required: pass --password-stdin and write it on stdin")
    _session().rollback()  # no transaction held while stdin is read (the operator may be typing)
    password = read_secret_from_stdin()
    hashed = users.hashed_if_acceptable(password)
    target = existing_user(email)  # again, in the transaction that sets the password
    ended = users.set_password(target, password, actor="cli", hashed=hashed)
    commit()
    click.echo(f"new password for {target.email}; {_ended(ended)}")


@user.command("disable")
@click.option("--email", required=True, help="The user's e-mail address.")
@with_appcontext
def user_disable(email: str) -> None:
    """Stop a user signing in; ends their sessions and revokes their tokens and their recovery QR codes."""
    _set_disabled(email, True)


@user.command("enable")
@click.option("--email", required=True, help="The user's e-mail address.")
@with_appcontext
def user_enable(email: str) -> None:
    """Let a disabled user sign in again (what ended stays ended)."""
    _set_disabled(email, False)


@user.command("sign-out")
@click.option("--email", required=True, help="The user's e-mail address.")
@with_appcontext
def user_sign_out(email: str) -> None:
    """End every session and token of a user (a lost or stolen device); nothing else changes."""
    from idp import users

    target = existing_user(email)
    ended = users.sign_out(target, actor="cli")
    commit()
    click.echo(f"{target.email} is signed out everywhere; {_ended(ended)}")


@user.command("delete")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--yes", is_flag=True, help="Confirm: the deletion is permanent (required).")
@with_appcontext
def user_delete(email: str, yes: bool) -> None:
    """Delete a user for good (someone who left: the right to erasure): their sessions and tokens
    end (applications told by back-channel logout), then the account and everything of theirs is
    removed. The audit log keeps its events until its retention ends. Cannot be undone."""
    from idp import users

    target = existing_user(email)  # an unknown address is told first, --yes or not
    if not yes:
        raise CliError(f"deleting {target.email} is permanent and cannot be undone: pass --yes to confirm")
    email, public_id = target.email, target.public_id
    try:
        ended = users.delete(target, actor="cli")
    except users.UserGone:  # deleted by someone else while this waited for the organization's row
        raise CliError(f"no user with e-mail {email!r}") from None
    commit()
    click.echo(f"deleted {email} (sub {public_id}); {_ended(ended)}")


@user.command("reset-factors")
@click.option("--email", required=True, help="The user's e-mail address.")
@with_appcontext
def user_reset_factors(email: str) -> None:
    """Revoke every second factor and recovery code of a user (a lost phone); the sessions their
    logins proved end. The admin pages do this for members only: an admin's is the operator's."""
    from idp import users

    target = existing_user(email)
    revoked = users.reset_factors(target, actor="cli")
    commit()
    if revoked:
        factors = ", ".join(sorted({c.factor for c in revoked}))
        click.echo(f"{target.email}: {len(revoked)} credential(s) revoked ({factors})")
    else:
        click.echo(f"{target.email} had no second factor or recovery code")


@user.command("set-role")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--role", required=True, type=click.Choice(["admin", "user"]),
              help="admin: administers their organization; user: signs in only.")
@with_appcontext
def user_set_role(email: str, role: str) -> None:
    """Make a user an administrator of their organization, or a plain user again."""
    from idp import users

    target = existing_user(email)
    changed = users.set_role(target, role, actor="cli")
    commit()
    click.echo(f"{target.email} is now {'an admin' if role == 'admin' else 'a user'}" if changed
               else f"{target.email} already was {'an admin' if role == 'admin' else 'a user'}")


@user.command("list")
@click.option("--org", "org_name", required=True, help="Name of the organization.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_appcontext
def user_list(org_name: str, as_json: bool) -> None:
    """List an organization's users: e-mail, name, role, disabled, 2FA status, creation time."""
    from idp.factors.cli import iso_utc

    documents = [{"email": row.email, "name": row.name, "role": row.role, "disabled": row.disabled,
                  "two_factor_status": row.status.value, "created_at": iso_utc(row.created_at)}
                 for row in users_of(find_org(org_name))]
    emit_listing(documents, as_json, lambda doc: [
        "  ".join([doc["email"], doc["role"], "disabled" if doc["disabled"] else "enabled",
                   f"2FA {doc['two_factor_status']}", f"created {doc['created_at']}", doc["name"]]).rstrip()],
        empty=f"no users in {org_name.strip()!r}")


@user.command("import")
@click.option("--org", "org_name", required=True, help="Name of the organization the users join.")
@click.option("--format", "file_format", type=click.Choice(["jsonl", "keycloak"]), default="jsonl", show_default=True,
              help="jsonl: one JSON object per user (docs/operations.md); keycloak: a Keycloak realm export.")
@click.option("--dry-run", is_flag=True, help="Check the file and list what would be imported; write nothing.")
@click.argument("file", metavar="FILE")
@with_appcontext
def user_import(org_name: str, file_format: str, dry_run: bool, file: str) -> None:
    """Import users from another system (FILE, or - for stdin), keeping their password hashes and TOTP
    secrets: nobody resets anything. The whole file is checked first: any bad line, and nothing is
    imported."""
    from sqlalchemy.exc import IntegrityError

    from idp import password_reset, user_import as imports

    data = read_import_file(file, imports.MAX_FILE_BYTES)  # (before the transaction: a pipe may be slow)
    org = find_org(org_name)
    try:
        records = imports.records_of_keycloak(data) if file_format == "keycloak" else imports.records_of_jsonl(data)
        users = imports.check(records, org)
        for where, _record, notes in records:
            for note in notes:
                click.echo(f"idp: warning: {where}: {note}", err=True)
        reset_links = password_reset.current_settings().enabled
        for incoming in users:
            stuck = imports.no_way_in(incoming, reset_links)
            if stuck:
                way = "invite them with idp user invite, or " if reset_links else ""
                click.echo(f"idp: warning: {incoming.where}: {incoming.email}: {stuck}: {way}set one with "
                           "idp user set-password", err=True)
        if dry_run:
            _session().rollback()
            for incoming in users:
                click.echo(imports.describe(incoming))
            click.echo(f"would import {len(users)} user(s) into {org.name!r} (--dry-run: nothing written)")
            return
        written = imports.write(org, users, source=file_format)
    except IntegrityError as exc:  # an address added by someone else since the check (PostgreSQL)
        _session().rollback()
        raise CliError(f"conflicting change, nothing imported: {str(exc.orig).splitlines()[0]}") from None
    except imports.ImportRefused as refused:
        _session().rollback()
        for problem in refused.problems:
            click.echo(f"{file}: {problem}", err=True)
        raise CliError(f"{len(refused.problems)} problem(s) in {file}: nothing imported") from None
    commit()
    schemes = ", ".join(f"{scheme} {count}" for scheme, count in sorted(written.with_password.items()))
    credentials = ", ".join(f"{name} {count}" for name, count in sorted(written.credentials.items()))
    click.echo(f"imported {written.users} user(s) into {org.name!r}: "
               f"{sum(written.with_password.values())} with their password ({schemes or 'none'}), "
               f"{written.without_password} without one ({_set_by(written, reset_links)})"
               + (f"; second factors: {credentials}" if credentials else ""))
    if written.recovery_codes_owed:
        click.echo(f"{written.recovery_codes_owed} user(s) will be shown a new set of recovery codes once, "
                   "at their next sign-in")


def _set_by(written, reset_links: bool) -> str:
    """How the users imported without a password get one (`idp user import`'s summary)."""
    if not reset_links:
        return "password reset links are off: idp user set-password"
    if written.without_password_unverified:
        return (f'they set one by "Forgot your password?", but for {written.without_password_unverified} '
                "whose address is not verified: idp user invite --all-without-password, or idp user set-password")
    return 'they set one by "Forgot your password?", or idp user invite --all-without-password invites them'


@user.command("show")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
@with_appcontext
def user_show(email: str, as_json: bool) -> None:
    """One account at a glance: its organization, role and 2FA status, sign-in methods, where it is
    signed in and the applications with access to it."""
    from idp import account_summary

    document = account_summary.summary(existing_user(email))
    if as_json:
        emit_json(document)
    else:
        click.echo("\n".join(account_summary.lines(document)))


def _set_disabled(email: str, disabled: bool) -> None:
    from idp import users

    target = existing_user(email)
    ended = users.set_disabled(target, disabled, actor="cli")
    commit()
    if ended is None:
        click.echo(f"{target.email} was already disabled" if disabled else f"{target.email} was not disabled")
    else:
        click.echo(f"{target.email} is disabled; {_ended(ended)}" if disabled else f"{target.email} is enabled")


def _ended(ended) -> str:
    return f"{ended.sessions} session(s) ended, {ended.tokens} token(s) revoked"


# --- clients

@cli.group()
def client() -> None:
    """OAuth clients (relying parties)."""


@client.command("add")
@click.option("--name", required=True, help="Name shown on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Redirect URI, matched exactly but for the port of http://127.0.0.1 or http://[::1] (a native "
                   "app's loopback server); https in production but on loopback; with --public also a native app's "
                   "private-use scheme, a reverse domain name in lower case with one slash: com.example.app:/cb "
                   "(RFC 8252 7.1) (repeatable; needed for authorization_code).")
@click.option("--public", is_flag=True,
              help="A public client: no secret, PKCE required, no introspection or client_credentials (a "
                   "third-party one with a non-https redirect URI sees the consent page at every login).")
@click.option("--first-party", is_flag=True,
              help="The organization's own application: never a consent page, and offline_access (refresh "
                   "tokens) without prompt=consent. Default: third party.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True,
              help="Where RP-initiated logout may return: only a logout that sends the client's ID token "
                   "as id_token_hint comes back unasked; checked as --redirect-uri (a --public client's "
                   "private-use scheme too) (repeatable).")
@click.option("--grant-type", "grant_types", multiple=True,
              help="authorization_code | refresh_token | client_credentials | device_code (repeatable; "
                   "default: authorization_code refresh_token; device_code is RFC 8628's "
                   "urn:ietf:params:oauth:grant-type:device_code).")
@click.option("--id-token-alg", default=None, help="ES256 (default) or RS256.")
@click.option("--backchannel-logout-uri", "backchannel", default=None,
              help="Where the client is told that a session it signed in through ended (OIDC Back-Channel Logout).")
@click.option("--frontchannel-logout-uri", "frontchannel", default=None,
              help="The client's page our signed-out page loads in a hidden frame when the user signs out "
                   "(OIDC Front-Channel Logout; at the origin of one of its redirect URIs).")
@click.option("--jwks", "jwks_path", default=None, metavar="FILE",
              help="The client's public keys (a JWK Set, one JWK, or one public key in PEM; - reads stdin): it "
                   "authenticates with private_key_jwt, and gets no secret.")
@click.option("--jwks-uri", default=None, metavar="URL",
              help="Where the client publishes its public keys (instead of --jwks): fetched, kept a few minutes, "
                   "fetched again when it rotates.")
@click.option("--require-par", "require_par", is_flag=True,
              help="Accept its authorization requests only as pushed requests (POST /oauth/par, RFC 9126).")
@click.option("--require-dpop", "require_dpop", is_flag=True,
              help="Issue its tokens only with a DPoP proof, bound to the client's key (RFC 9449).")
@with_appcontext
def client_add(name, redirect_uris, public, first_party, logout_uris, grant_types, id_token_alg, backchannel,
               frontchannel, jwks_path, jwks_uri, require_par, require_dpop) -> None:
    """Register a client; prints JSON {"client_id", "client_secret"} (no secret for --public, --jwks or --jwks-uri)."""
    from idp import clients
    from idp.factors.cli import show_before_commit

    row, secret = clients.register(clients.Registration(
        name=name, redirect_uris=redirect_uris, post_logout_redirect_uris=logout_uris, grant_types=grant_types,
        public=public, first_party=first_party, id_token_alg=id_token_alg, backchannel_logout_uri=backchannel,
        frontchannel_logout_uri=frontchannel, jwks=read_jwks(jwks_path), jwks_uri=jwks_uri,
        require_pushed_authorization_requests=require_par, dpop_bound_access_tokens=require_dpop))
    document = {"client_id": row.client_id}
    if secret is not None:
        document["client_secret"] = secret
    # Shown before the commit: a client whose secret nobody saw must not be left registered.
    show_before_commit(_json_text(document), nothing="no client was registered")
    commit()


@client.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the registrations.")
@with_appcontext
def client_list(as_json: bool) -> None:
    """List every client: id, type, first or third party, grant types, redirect URIs, creation time."""
    from idp import clients

    emit_listing([_client_document(row) for row in clients.all_clients()], as_json, lambda doc: [
        "  ".join([doc["client_id"], _client_type_text(doc),
                   "first-party" if doc["first_party"] else "third-party", f"created {doc['created_at']}",
                   doc["name"]]),
        f"    grant types: {_setting_text(doc['grant_types'])}",
        f"    redirect URIs: {_setting_text(doc['redirect_uris'])}"],
        empty="no clients: register one with `idp client add`")


def _client_type_text(document: dict) -> str:
    """public, confidential (a secret), or confidential with keys (private_key_jwt)."""
    if document["public"]:
        return "public"
    return "confidential (keys)" if "private_key_jwt" in document["token_endpoint_auth_methods"] else "confidential"


@client.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print the registration as JSON.")
@with_appcontext
def client_show(client_id: str, as_json: bool) -> None:
    """One client's whole registration (never a secret: only its SHA-256 is stored)."""
    from idp import clients

    document = _client_document(clients.find(client_id))
    if as_json:
        emit_json(document)
        return
    width = max(len(key) for key in document)
    for key, value in document.items():
        click.echo(f"{key:<{width}}  {_setting_text(value)}")


def _client_document(row) -> dict:
    """A client as `idp client list | show` print it: the registration its audit events record,
    when it was created, and until when its previous secret still works (`rotate-secret
    --grace`; null when it does not)."""
    from idp.clients import client_settings
    from idp.db import utcnow
    from idp.factors.cli import iso_utc

    until = row.previous_secret_expires_at
    return {**client_settings(row), "created_at": iso_utc(row.created_at),
            "previous_secret_expires_at": iso_utc(until) if until is not None and until > utcnow() else None}


@client.command("update")
@click.argument("client_id")
@click.option("--name", default=None, help="Name shown on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Redirect URI, checked and matched as `add` says (repeatable; replaces the registered list).")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True,
              help='Where RP-initiated logout may return (repeatable; replaces the registered list; "" alone '
                   "clears it).")
@click.option("--first-party/--third-party", "first_party", default=None,
              help="The organization's own application (no consent page; offline_access without "
                   "prompt=consent), or a third party again.")
@click.option("--grant-type", "grant_types", multiple=True,
              help="authorization_code | refresh_token | client_credentials | device_code (repeatable; replaces "
                   "the list).")
@click.option("--id-token-alg", default=None, help="ES256 or RS256.")
@click.option("--backchannel-logout-uri", "backchannel", default=None,
              help='Where the client is told that a session ended ("" to stop telling it).')
@click.option("--frontchannel-logout-uri", "frontchannel", default=None,
              help='The client\'s page loaded in a hidden frame at sign-out ("" to stop loading it).')
@click.option("--jwks", "jwks_path", default=None, metavar="FILE",
              help="New public keys for a private_key_jwt client (a JWK Set, one JWK, or one public key in PEM; "
                   "- reads stdin; replaces its keys).")
@click.option("--jwks-uri", default=None, metavar="URL",
              help="Where a private_key_jwt client publishes its keys (replaces its registered keys).")
@click.option("--require-par/--no-require-par", "require_par", default=None,
              help="Accept its authorization requests only as pushed requests (POST /oauth/par), or again from "
                   "the browser too.")
@click.option("--require-dpop/--no-require-dpop", "require_dpop", default=None,
              help="Issue its tokens only with a DPoP proof (RFC 9449), or bearer tokens again too.")
@with_appcontext
def client_update(client_id, name, redirect_uris, logout_uris, first_party, grant_types, id_token_alg,
                  backchannel, frontchannel, jwks_path, jwks_uri, require_par, require_dpop) -> None:
    """Change a client's registration, checked as `add` checks it; prints what changed.

    Workers keep a client they read for `tokens.client_cache_ttl` seconds (default 5): a
    worker may go by the old settings for that long."""
    from idp import clients

    row = clients.find(client_id, for_update=True)
    changes = clients.change(row, name=name, redirect_uris=redirect_uris or None,
                             post_logout_redirect_uris=_cleared_list(logout_uris), first_party=first_party,
                             grant_types=grant_types or None, id_token_alg=id_token_alg,
                             backchannel_logout_uri=backchannel, frontchannel_logout_uri=frontchannel,
                             jwks=read_jwks(jwks_path), jwks_uri=jwks_uri,
                             require_pushed_authorization_requests=require_par,
                             dpop_bound_access_tokens=require_dpop)
    commit()
    if not changes:
        click.echo(f"client {row.client_id} already had these settings")
    for setting, change in changes.items():
        click.echo(f"{setting}: {_setting_text(change['from'])} -> {_setting_text(change['to'])}")


def _cleared_list(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """A repeatable option of `client update` that may empty its list: not given (None: keep the
    list), given as "" alone (an empty list: clear it, as `--backchannel-logout-uri ""` clears
    that one), or the new list ("" among other values is refused as any bad URI is)."""
    if not values:
        return None
    return () if values == ("",) else values


def _setting_text(value) -> str:
    """A registration's setting on one line: a list comma-separated ("-" when empty or unset)."""
    if value is None:
        return "-"
    return (", ".join(value) or "-") if isinstance(value, list) else str(value)


@client.command("rotate-secret")
@click.argument("client_id")
@click.option("--grace", default=None, metavar="DURATION",
              help="Keep the old secret working this long beside the new one (e.g. 1h, 7d; at most 30d).")
@with_appcontext
def client_rotate_secret(client_id: str, grace: str | None) -> None:
    """Give a confidential client a new secret; prints JSON {"client_id", "client_secret"} once
    (and "previous_secret_expires_at" with --grace).

    The new secret works at once. The old one stops working within `tokens.client_cache_ttl`
    seconds (default 5): workers keep a client they read for that long. With --grace it works
    until then, so that the client's servers can move to the new one without refusals."""
    from idp import clients
    from idp.factors.cli import iso_utc, show_before_commit, validity

    seconds = validity(grace, default=0, minimum=60, maximum=clients.MAX_SECRET_GRACE, option="--grace")
    row = clients.find(client_id, for_update=True)
    secret = clients.rotate_secret(row, grace=seconds)
    document = {"client_id": row.client_id, "client_secret": secret}
    if row.previous_secret_expires_at is not None:
        document["previous_secret_expires_at"] = iso_utc(row.previous_secret_expires_at)
    # Shown before the commit: committed first, an unwritable stdout would leave the client with a
    # secret nobody saw, and without the old one (without --grace it stops working at once).
    show_before_commit(_json_text(document), nothing="the secret was not rotated")
    commit()


@client.command("remove")
@click.argument("client_id")
@with_appcontext
def client_remove(client_id: str) -> None:
    """Delete a client with its codes, tokens and remembered consents; its logins in progress end.

    Workers keep a client they read for `tokens.client_cache_ttl` seconds (default 5): for that
    long one may still serve it as before (docs/operations.md, "Clients")."""
    from idp import clients

    row = clients.find(client_id, for_update=True)
    name = row.name
    ended = clients.remove(row)
    commit()
    click.echo(f"removed client {client_id.strip()} ({name}): {ended['tokens_deleted']} token(s), "
               f"{ended['codes_deleted']} code(s), {ended['consents_deleted']} consent(s) deleted, "
               f"{ended['logins_ended']} login(s) in progress ended")


# --- signing keys and secrets at rest

@cli.group()
def keys() -> None:
    """ID-token signing keys and the encryption of secrets at rest."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_appcontext
def keys_list(as_json: bool) -> None:
    """List signing keys with their status (published, active, retired, removed)."""
    from idp.oidc.keys import list_keys

    # A published key's line says when it starts signing: the moment a rotation is waiting for.
    emit_listing(list_keys(), as_json, lambda row: [
        "  ".join([row["kid"], row["alg"], row["status"], f"created {row['created_at']}"]
                  + ([f"signs from {row['activates_at']}"] if row["status"] == "published" else [])
                  + [f"retired {row['retired_at'] or '-'}", f"remove after {row['remove_after'] or '-'}"])],
        empty="no signing keys: run `idp init`")


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print the new keys as JSON.")
@with_appcontext
def keys_rotate(as_json: bool) -> None:
    """Publish new signing keys now; the current ones retire and stay in the JWKS until their tokens expire."""
    from idp.factors.cli import iso_utc
    from idp.oidc.keys import rotate
    from idp.security.secrets import SecretError

    try:
        new_keys = rotate(actor="cli")  # committed with its `signing_key.rotated` event
    except SecretError as exc:
        raise CliError(str(exc)) from None
    kids = [{"kid": k.kid, "alg": k.alg} for k in new_keys]
    if as_json:
        emit_json(kids)
    else:
        for key in new_keys:  # (tokens.key_publish_delay: relying parties' cached JWKS learn it first)
            click.echo(f"published signing key {key.kid} ({key.alg}); it signs from {iso_utc(key.activates_at)}")


@keys.command("withdraw")
@click.argument("kid")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@with_appcontext
def keys_withdraw(kid: str, as_json: bool) -> None:
    """Take signing key KID out of use and out of the JWKS now (its private key leaked): the ID
    tokens it signed stop verifying, and its algorithm's next key signs at once. Servers follow
    within 10 seconds (their key cache)."""
    import dataclasses

    from idp import audit
    from idp.oidc import keys as signing_keys
    from idp.security.secrets import SecretError

    try:
        done = signing_keys.withdraw(kid)
    except (signing_keys.KeyRefused, SecretError) as exc:
        raise CliError(str(exc)) from None
    audit.record("signing_key.withdrawn", org_id=None, actor="cli", details=dataclasses.asdict(done))
    commit()
    signing_keys.invalidate_cache()
    if as_json:
        emit_json(dataclasses.asdict(done))
        return
    click.echo(f"withdrew signing key {done.kid} ({done.alg}): no longer published")
    if done.created:
        click.echo(f"created signing key {done.created} ({done.alg}) in its place")
    click.echo(f"{done.alg} ID tokens are signed by {done.signs_now}")


@keys.command("rotate-secrets")
@with_appcontext
def keys_rotate_secrets() -> None:
    """Re-encrypt secrets at rest (signing keys, factor credentials) with the first encryption key."""
    from idp import audit
    from idp.factors.errors import SecretUnavailable
    from idp.factors.store import reseal_all as reseal_credentials
    from idp.oidc import keys as signing_keys
    from idp.security.secrets import SecretError

    # Each committed step carries its own `secrets.resealed` event, in its transaction: the
    # signing keys, then every batch of credentials (a row that does not open stops the command
    # after the batches before it, which stay done and recorded; a second run picks up the rest).
    counts = {"signing_keys": 0, "credentials": 0}

    def resealed(what: str, count: int) -> None:
        counts[what] += count
        if count:  # (nothing resealed: nothing changed, no event)
            audit.record("secrets.resealed", org_id=None, actor="cli", details={what: count})

    try:
        resealed("signing_keys", signing_keys.reseal_all())
        commit()
        reseal_credentials(before_commit=lambda count: resealed("credentials", count))
    except (SecretError, SecretUnavailable) as exc:
        _session().rollback()
        done = f" ({counts['signing_keys']} signing keys and {counts['credentials']} credentials were resealed first)" \
            if any(counts.values()) else ""
        raise CliError(f"{exc}: keep every key that sealed a row in security.encryption_keys, after the new one "
                       "(\"dev\" for rows sealed without encryption keys), until this command has run" + done) from None
    ring = current_app.extensions["idp.keyring"]
    click.echo(f"resealed with key {ring.current_id!r}: "
               + ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in counts.items()))


# --- housekeeping

@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts per table as JSON.")
@with_appcontext
def purge(dry_run: bool, as_json: bool) -> None:
    """Delete expired login transactions, sessions, codes, tokens, challenges and idle failure counters.

    Audit events go too, once older than `ops.audit_retention_days` when that is set (0, the default,
    keeps them all), recorded in an `audit.purged` event; and the private keys of signing keys out of the
    JWKS (past `remove_after`) are wiped, their rows kept. Safe to run at any time (e.g. hourly from
    cron); docs/operations.md ("Housekeeping") and idp/maintenance.py say what "expired" means per table.
    """
    from idp.maintenance import purge as run_purge

    counts = run_purge(dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "counts": counts})
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} " + ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in counts.items()))


# --- the audit log

@cli.group()
def audit() -> None:
    """The audit log: every security-relevant change, as the database kept it."""


@audit.command("list")
@click.option("--org", "org_name", default=None,
              help="Only this organization's events (default: every organization's, and those of none).")
@click.option("--user", "email", default=None, help="Only the events about this user (its subject).")
@click.option("--event", "prefix", default="",
              help='Only the events whose name begins so ("login.", "factor.removed"), in any case: event names '
                   'are lower case.')
@click.option("--since", default="24h", show_default=True, metavar="WHEN",
              help="From this long ago (90m, 7d) or this UTC time (2026-12-01T00:00:00Z).")
@click.option("--until", default=None, metavar="WHEN", help="Up to (not including) this long ago or this UTC time.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="At most this many events (the oldest of the window); a note on stderr says when more were left.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the events.")
@with_appcontext
def audit_list(org_name, email, prefix, since, until, limit, as_json) -> None:
    """The audit events of a time window, oldest first: time, event, organization, actor,
    subject, address and details (and the User-Agent with --json)."""
    from idp import audit_export
    from idp.factors.cli import iso_utc

    user_id, user_org_id = _audit_subject(email) if email is not None else (None, None)
    start, end = _moment(since, "--since"), _moment(until, "--until") if until else None
    if end is not None and end <= start:
        # "no events" would read as an answer (nothing happened then), not as a window the wrong way round.
        raise CliError(f"--until ({iso_utc(end)}) is not after --since ({iso_utc(start)}): "
                       f"nothing can be in that window")
    window = audit_export.Window(since=start, until=end,
                                 org_id=find_org(org_name).id if org_name is not None else None,
                                 subject_id=user_id, subject_org_id=user_org_id,
                                 prefix=prefix.strip())
    documents, more = audit_export.events(window, limit)
    emit_listing(documents, as_json, lambda doc: [audit_export.text_line(doc)], empty="no events")
    if more:
        click.echo(f"more than {limit} events: narrow the window (--since, --until) or raise --limit", err=True)


def _audit_subject(raw_email: str) -> tuple[int, int]:
    """(user id, organization id) of the user with this address; for an address no user has,
    those of the latest user deleted with it, as their `user.deleted` event recorded them (the
    log keeps a departed person's trail: idp.users.delete); else CliError."""
    from sqlalchemy import select

    from idp.models import AuditEvent, Organization

    email = normalise_email(raw_email)
    found = find_user(email)
    if found is not None:
        return found.id, found.org_id
    deleted = _session().execute(
        select(AuditEvent.subject_id, AuditEvent.org_id)
        # Each organization's deletions on ix_audit_org_event, not a scan of the whole log.
        .where(AuditEvent.org_id.in_(select(Organization.id)), AuditEvent.event == "user.deleted",
               AuditEvent.subject_id.is_not(None), AuditEvent.details["email"].as_string() == email)
        .order_by(AuditEvent.id.desc()).limit(1)).first()
    if deleted is None:
        raise CliError(f"no user with e-mail {email!r}")
    return deleted.subject_id, deleted.org_id


def _moment(text: str, option: str):
    """A naive UTC time from "90m"/"7d" (that long ago) or an ISO 8601 time (UTC unless it says)."""
    from datetime import datetime, timedelta, timezone

    from idp.db import utcnow
    from idp.factors.cli import parse_duration

    far = CliError(f"{option}: too far from now to look for events: {text!r}")
    try:
        return utcnow() - timedelta(seconds=parse_duration(text))
    except OverflowError:  # "999999d": before the year 1
        raise far from None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{option}: not a duration (90m, 7d) nor a time (2026-12-01T00:00:00Z): {text!r}") from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00:00+01:00: before the year 1 in UTC
            raise far from None
    return moment


# --- second factors: plugin commands

class FactorGroup(click.Group):
    """`idp factor NAME ...`: commands the installed factor plugins contribute through the registry."""

    @staticmethod
    def _plugin_commands() -> dict[str, click.Command]:
        try:
            from idp.factors import registry
        except ImportError:
            return {}
        provider = getattr(registry, "cli_commands", None)
        return dict(provider() or {}) if provider else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugin_commands().get(name)


@cli.group(cls=FactorGroup)
def factor() -> None:
    """Second factors: commands of the installed factor plugins."""


# --- the demo

DEMO_ORG = "Demo"
DEMO_ADMIN = ("admin@demo.example", "Demo Admin", "demo-admin-password")
DEMO_USER = ("user@demo.example", "Demo User", "demo-user-password")
DEMO_CLIENT = "Demo relying party"
# A device without a browser (examples/device/signin.py): public, first-party, RFC 8628.
DEMO_DEVICE = "Demo device"


@cli.group()
def demo() -> None:
    """The demo data of `make run` (development only)."""


@demo.command("seed")
@click.option("--rp-url", default="http://127.0.0.1:5001", show_default=True,
              help="Base URL of the demo relying party (examples/rp).")
@click.option("--rp-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the RP's client_id/secret (default: INSTANCE/demo-rp.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as JSON.")
@with_appcontext
def demo_seed(rp_url: str, rp_config: Path | None, as_json: bool) -> None:
    """Create (or find) the demo organization, an admin, a user, the demo client and the demo device
    client. Idempotent."""
    from sqlalchemy import select

    from idp import clients
    from idp.models import Client, Organization
    from idp.security.tokens import matches_hash

    app = current_app._get_current_object()
    if app.extensions["idp.settings"].production:
        raise CliError("refusing to seed demo accounts with known passwords when IDP_ENV=production")
    rp_url = clients.check_redirect_uri(rp_url.rstrip("/"), "RP URL")
    rp_config = rp_config or Path(app.instance_path) / "demo-rp.json"
    session = _session()

    if session.scalar(select(Organization).where(Organization.name == DEMO_ORG)) is None:
        add_org(DEMO_ORG)
    people = []
    for (email, name, password), admin in ((DEMO_ADMIN, True), (DEMO_USER, False)):
        if find_user(email) is None:
            add_user(DEMO_ORG, email, password, name=name, admin=admin)
        people.append({"email": email, "password": password, "role": "admin" if admin else "user"})

    saved = _saved_rp_config(rp_config)
    row = session.scalar(select(Client).where(Client.name == DEMO_CLIENT))
    callback, home, frontchannel = f"{rp_url}/callback", f"{rp_url}/", f"{rp_url}/frontchannel-logout"
    if row is None:
        row, secret = clients.register(clients.Registration(name=DEMO_CLIENT, redirect_uris=(callback,),
                                                            post_logout_redirect_uris=(home,),
                                                            frontchannel_logout_uri=frontchannel))
    else:
        # Keep the registration in step with --rp-url; the secret is only known if the file still has it.
        clients.change(row, redirect_uris=[callback], post_logout_redirect_uris=[home],
                       frontchannel_logout_uri=frontchannel)
        secret = saved.get("client_secret") if saved.get("client_id") == row.client_id else None
        if not secret or not matches_hash(secret, row.secret_hash):
            secret = clients.rotate_secret(row)
    device = session.scalar(select(Client).where(Client.name == DEMO_DEVICE))
    if device is None:
        device, _none = clients.register(clients.Registration(
            name=DEMO_DEVICE, public=True, first_party=True, grant_types=(clients.DEVICE_CODE, "refresh_token")))

    settings = app.extensions["idp.settings"]
    # The file and the database must agree on the secret, and the new secret must never exist in
    # the database alone: staged beside the file first (a file that cannot be written stops the
    # command here, nothing committed), then committed, then put in place. A failed commit leaves
    # the old file with the old secret, which still works; a file put in place before the commit
    # would have replaced it with a secret the database never took.
    staged = _stage_private_file(rp_config, json.dumps(
        {"issuer": settings.issuer, "client_id": row.client_id, "client_secret": secret}, indent=2) + "\n")
    try:
        commit()
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    try:
        os.replace(staged, rp_config)
    except OSError as error:  # the secret is committed: say where its only copy is
        raise CliError(f"cannot write {rp_config} ({error.strerror or error}): the demo client's new secret "
                       f"is in {staged}; move it there") from None
    document = {"issuer": settings.issuer, "organization": DEMO_ORG, "users": people,
                "client": {"client_id": row.client_id, "client_secret": secret, "redirect_uri": callback,
                           "post_logout_redirect_uri": home},
                "device_client": {"client_id": device.client_id}}
    if as_json:
        emit_json(document)
        return
    click.echo(f"Demo organization {DEMO_ORG!r} at {settings.issuer}")
    for person in people:
        click.echo(f"  {person['role']:<5}  {person['email']}  password: {person['password']}")
    click.echo(f"  client_id {row.client_id}  client_secret {secret}  (saved in {rp_config})")
    click.echo(f"Sign in at {home}")
    click.echo(f"Sign a device in: .venv/bin/python examples/device/signin.py --issuer {settings.issuer} "
               f"--client-id {device.client_id}")


def _saved_rp_config(path: Path) -> dict:
    """What an earlier `demo seed` saved for the RP: a JSON object, else nothing (no file, one that
    cannot be read, or whose JSON is not an object: the secret is then issued again)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _stage_private_file(path: Path, text: str) -> Path:
    """`text` in a new file beside `path` (same directory, so that os.replace moves it there in one
    step), created readable by its owner only: the secret is never in a file others may read,
    not even for a moment. CliError when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        os.unlink(staged)
        raise CliError(f"cannot write {path}: {error.strerror or error}") from None
    return Path(staged)


# --------------------------------------------------------------------------- entry point

def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> None:
    """Console script `idp`: run the command tree; turn every expected failure into one stderr line."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not all(map(storable, args)):
        # Python hands bytes that are not UTF-8 over as lone surrogates (PEP 383): no database
        # column, no JSON document and no terminal can take them. Refused here, once, before any
        # command could carry one into a query or an audit event and die there on encoding it.
        click.echo("idp: error: the command line is not UTF-8 text", err=True)
        sys.exit(2)
    try:
        code = cli.main(args=args, prog_name="idp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("idp: error: aborted", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as exc:  # `idp`, `idp org`: the help, as click prints it
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors, CliError
        click.echo(f"idp: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        message = _refusal(exc)
        if message is None:
            raise
        click.echo(f"idp: error: {_one_line(message)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _raised(exc: Exception, module: str, name: str) -> bool:
    """Whether `exc` is `module.name`, asked only of a module the command loaded: one it never
    imported cannot have raised it. So naming an exception costs no import: `main` no longer
    loads SQLAlchemy and the provider's models up front (0.5 s) for a command that needs neither."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(exc, getattr(loaded, name))


def _refusal(exc: Exception) -> str | None:
    """What to print of an expected failure (the text after `idp: error: `); None for a bug."""
    if _raised(exc, "idp.config", "ConfigError"):
        return f"configuration: {exc}"
    if _raised(exc, "idp.users", "AccountRefused") or _raised(exc, "idp.clients", "ClientRefused"):
        return str(exc)  # idp.users' and idp.clients' refusals
    if _raised(exc, "idp.factors.errors", "FactorError"):
        # An operator problem a plugin's command ran into (`idp factor NAME` of a factor listed
        # in factors.disabled: FactorNotFound; a secret whose key left the ring): its message.
        return str(exc)
    if _raised(exc, "sqlalchemy.exc", "SQLAlchemyError"):
        detail = getattr(exc, "orig", None) or exc
        return f"database: {str(detail).splitlines()[0] if str(detail) else type(detail).__name__}"
    if isinstance(exc, OSError):
        return str(exc)
    if isinstance(exc, UnicodeError):
        # A backstop for text main's check cannot see (a file's, a plugin's input): not a bug of
        # ours to print as a traceback, and nothing was committed before the encoding failed.
        return "input that is not UTF-8 text"
    return None


if __name__ == "__main__":
    main()
