"""`idp policy ...`: the operators' door to the 2FA policy (CONTRACT.md, "The `idp` command").

    idp policy show --org ORG [--json]
    idp policy require-all --org ORG on|off
    idp policy factors --org ORG all | NAME [NAME ...]
    idp policy grace --org ORG [--days N] [--logins N]
    idp policy push-recovery --org ORG on|off
    idp policy user EMAIL --require | --exempt [--until YYYY-MM-DD] [--reason TEXT] | --follow-org
                          | --resume-push
    idp policy user [EMAIL] [--email EMAIL ...] [--emails-from FILE|-] --require | --exempt ... | --follow-org
                          (several users at once, all or nothing: docs/contract-extensions.md)

The commands call the same functions as the admin pages (idp.policy.settings), so
the rules and the audit events are the same; the actor is "cli". Bad input raises
a `click.ClickException`: one line on stderr and a non-zero exit (the `idp` entry
point formats it; usage errors are turned into one line here too). A change that
is already in place prints what is there and writes nothing.

The group is mounted by idp/cli.py as `policy` (the object below must keep that
name). It runs inside the app context that `idp` pushes; run on its own (tests,
other entry points) it builds the app through `create_app()`.
"""
from __future__ import annotations

import functools
import json
from datetime import date, datetime

import click
from flask import has_app_context
from sqlalchemy import func, select

from idp.policy import settings as policy_settings
from idp.policy.status import ORDER, TwoFactorStatus, disabled_count, distribution, impact_of_requiring_all, status

SHIELD_TEXT = {
    TwoFactorStatus.NOT_ACTIVE: "red: 2FA is not active",
    TwoFactorStatus.REQUIRED_NOT_SET_UP: "orange, exclamation: required, not set up",
    TwoFactorStatus.ACTIVE_VOLUNTARY: "orange, check: active, set up voluntarily",
    TwoFactorStatus.ACTIVE_REQUIRED: "green, check: active and required",
}


class PolicyCliError(click.ClickException):
    """Bad input: one line on stderr, exit status 2 for usage, 1 otherwise."""


class _OneLineCommand(click.Command):
    """Usage errors (a missing option, a bad date) as one stderr line instead of a usage block."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            error = PolicyCliError(exc.format_message())
            error.exit_code = exc.exit_code
            raise error from None


def _in_app(fn):
    """Run inside the current app context, or build the app when there is none."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if has_app_context():
            return fn(*args, **kwargs)
        from idp.app import create_app

        with create_app().app_context():
            return fn(*args, **kwargs)

    return wrapper


def _find_org(name: str):
    """The organization named `name`, by name only, as every other `idp` command takes it: an id
    taken when no name matched let a numeric name or a typo act on another organization."""
    from idp.db import db
    from idp.models import Organization

    name = (name or "").strip()
    org = db.session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        raise PolicyCliError(f"unknown organization {name!r}")
    return org


def _find_user(email: str):
    from idp.db import db
    from idp.models import User

    email = (email or "").strip()
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = db.session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    if user is None:
        raise PolicyCliError(f"unknown user {email!r}")
    return user


def _today() -> date:
    from idp.db import utcnow

    return utcnow().date()


def _change(setter, target_id: int, *args, **kwargs) -> bool:
    """Call an idp.policy.settings change as the CLI actor; its PolicyError becomes one stderr line."""
    try:
        return setter(target_id, *args, policy_settings.Actor.cli(), **kwargs)
    except policy_settings.PolicyError as exc:
        raise PolicyCliError(str(exc)) from None


def _grace_text(days: int | None, logins: int | None) -> str:
    return ", ".join(part for part in (f"{days} days" if days else "", f"{logins} logins" if logins else "")
                     if part) or "none"


@click.group("policy")
def policy() -> None:
    """Who must use a second factor: the organization's rule, per-user settings, the four statuses."""


@policy.command("show", cls=_OneLineCommand)
@click.option("--org", "org_name", required=True, metavar="ORG", help="Organization name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@_in_app
def show(org_name: str, as_json: bool) -> None:
    """The four-status distribution of the organization's users, and its 2FA settings."""
    org = _find_org(org_name)
    today = _today()
    counts = distribution(org.id, today)
    disabled = disabled_count(org.id)
    impact = impact_of_requiring_all(org.id, today)
    document = {
        "org": {"id": org.id, "name": org.name},
        "settings": {
            "require_2fa": bool(org.require_2fa),
            "allowed_factors": org.allowed_factors,
            "grace_days": org.grace_days,
            "grace_logins": org.grace_logins,
            "self_push_recovery": bool(org.self_push_recovery),
        },
        "distribution": {s.value: counts[s] for s in ORDER},
        "total": sum(counts.values()),
        "disabled_not_counted": disabled,
        "impact_of_requiring_all": impact.as_dict(),
    }
    if as_json:
        click.echo(json.dumps(document, sort_keys=True))
        return
    settings = document["settings"]
    click.echo(f"Organization: {org.name}")
    click.echo(f"2FA required for everyone: {'on' if settings['require_2fa'] else 'off'}")
    allowed = settings["allowed_factors"]
    click.echo(f"Allowed factors: {', '.join(allowed) if allowed is not None else 'all installed'}")
    click.echo(f"Grace period: {_grace_text(settings['grace_days'], settings['grace_logins'])}")
    click.echo("Push on a new phone by password + e-mailed code: "
               f"{'on' if settings['self_push_recovery'] else 'off (recovery QR code only)'}")
    click.echo(f"Users: {document['total']}" + (f" ({disabled} disabled, not counted)" if disabled else ""))
    width = max(len(s.value) for s in ORDER)
    for s in ORDER:
        click.echo(f"  {s.value:<{width}}  {counts[s]:>7}  ({SHIELD_TEXT[s]})")
    if not settings["require_2fa"]:
        click.echo(f"Requiring 2FA for everyone now: {impact.must_enrol} would have to set it up at their "
                   f"next login, {impact.exempt} exempt")


@policy.command("require-all", cls=_OneLineCommand)
@click.option("--org", "org_name", required=True, metavar="ORG", help="Organization name.")
@click.argument("state", type=click.Choice(["on", "off"], case_sensitive=False))
@_in_app
def require_all(org_name: str, state: str) -> None:
    """Require 2FA for everyone in the organization (on), or make it optional again (off)."""
    org = _find_org(org_name)
    on = state.lower() == "on"
    changed = _change(policy_settings.set_org_requirement, org.id, on)
    what = "required for everyone" if on else "optional for everyone"
    click.echo(f"2FA is {'now' if changed else 'already'} {what} in {org.name}")


def _installed_second_factors() -> list[str]:
    """The names `factors` accepts. Policy never imports the factor registry (STYLE.md's module
    map): it reads the app's, whose factors say what they are for ("second_factor")."""
    from flask import current_app

    registry = current_app.extensions.get("idp.factors")
    return [f.name for f in (registry.all() if registry is not None else []) if f.kind == "second_factor"]


@policy.command("factors", cls=_OneLineCommand)
@click.option("--org", "org_name", required=True, metavar="ORG", help="Organization name.")
@click.argument("names", nargs=-1, required=True, metavar="all | NAME [NAME ...]")
@_in_app
def factors(org_name: str, names: tuple[str, ...]) -> None:
    """The second factors the organization accepts: `all` installed ones, or the names given."""
    org = _find_org(org_name)
    wanted = None if [n.lower() for n in names] == ["all"] else list(names)
    if wanted is not None and any(n.lower() == "all" for n in wanted):
        raise PolicyCliError("give either `all` or factor names, not both")
    installed = _installed_second_factors()
    try:
        changed = policy_settings.set_allowed_factors(org.id, wanted, policy_settings.Actor.cli(), known=installed)
    except policy_settings.PolicyError as exc:  # with the installed names: what to type instead
        raise PolicyCliError(f"{exc} (installed: {', '.join(installed) or 'none'})") from None
    from idp.db import db

    db.session.expire_all()
    allowed = _find_org(org_name).allowed_factors
    what = ", ".join(allowed) if allowed is not None else "every installed second factor"
    click.echo(f"{org.name} {'now' if changed else 'already'} accepts: {what}")


@policy.command("grace", cls=_OneLineCommand)
@click.option("--org", "org_name", required=True, metavar="ORG", help="Organization name.")
@click.option("--days", type=click.IntRange(0, policy_settings.MAX_GRACE_DAYS), default=None, metavar="N",
              help="Days a newly required user may postpone setting up a second factor (0: none).")
@click.option("--logins", type=click.IntRange(0, policy_settings.MAX_GRACE_LOGINS), default=None, metavar="N",
              help="Logins a newly required user may postpone it for (0: none).")
@_in_app
def grace(org_name: str, days: int | None, logins: int | None) -> None:
    """How long a newly required user may postpone enrolment: days, logins, or both (whichever runs
    out first); `--days 0 --logins 0` for no grace. An option left out keeps its current value."""
    if days is None and logins is None:
        raise PolicyCliError("give --days, --logins or both (0 for none); `idp policy show` tells the current grace")
    from idp.db import db

    org = _find_org(org_name)
    # The measure left out is KEEP, read under the organization's row lock by set_grace: a value
    # read here and written back would undo an admin's change of it made meanwhile.
    changed = _change(policy_settings.set_grace, org.id, policy_settings.KEEP if days is None else days,
                      policy_settings.KEEP if logins is None else logins)
    db.session.expire_all()
    org = _find_org(org_name)
    click.echo(f"Grace period in {org.name} is {'now' if changed else 'already'}: "
               f"{_grace_text(org.grace_days, org.grace_logins)}")


@policy.command("push-recovery", cls=_OneLineCommand)
@click.option("--org", "org_name", required=True, metavar="ORG", help="Organization name.")
@click.argument("state", type=click.Choice(["on", "off"], case_sensitive=False))
@_in_app
def push_recovery(org_name: str, state: str) -> None:
    """Whether members may restore push on a new phone with their password and an e-mailed code
    (on), or only with a recovery QR code from an admin (off)."""
    org = _find_org(org_name)
    on = state.lower() == "on"
    changed = _change(policy_settings.set_self_push_recovery, org.id, on)
    what = ("open to password + e-mailed code" if on else "by recovery QR code only")
    click.echo(f"Push recovery on a new phone is {'now' if changed else 'already'} {what} in {org.name}")


@policy.command("user", cls=_OneLineCommand)
@click.argument("email", required=False)
@click.option("--email", "emails", multiple=True, metavar="EMAIL",
              help="A user's address; give it several times for several users.")
@click.option("--emails-from", type=click.File("r", encoding="utf-8"), metavar="FILE|-",
              help="Read the users' addresses from FILE (- for standard input), one per line.")
@click.option("--require", is_flag=True, help="Always require 2FA for these users.")
@click.option("--exempt", is_flag=True, help="Waive 2FA for these users.")
@click.option("--follow-org", is_flag=True, help="Follow the organization's rule.")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="With --exempt: the last exempt day.")
@click.option("--reason", metavar="TEXT", help="With --exempt: why (kept in the audit log).")
@click.option("--resume-push", is_flag=True,
              help="Resume push approvals suspended by a fraud report (on its own, one user).")
@_in_app
def user(email: str | None, emails: tuple[str, ...], emails_from, require: bool, exempt: bool, follow_org: bool,
         until: datetime | None, reason: str | None, resume_push: bool) -> None:
    """Set users' 2FA: --require, --exempt [--until DATE] [--reason TEXT], or --follow-org;
    or --resume-push after a fraud report. The users: EMAIL, --email (repeatable) and the lines
    of --emails-from, all changed in one transaction or, on any error, none."""
    from idp.db import db
    from idp.models import Organization

    chosen = [m for m, flag in (("required", require), ("exempt", exempt), ("follow", follow_org),
                                ("resume-push", resume_push)) if flag]
    if len(chosen) != 1:
        raise PolicyCliError("choose exactly one of --require, --exempt, --follow-org or --resume-push")
    mode = chosen[0]
    if mode != "exempt" and (until is not None or reason is not None):
        raise PolicyCliError("--until and --reason go with --exempt only")
    addresses = _addresses(email, emails, emails_from)
    if mode == "resume-push":
        if len(addresses) != 1:
            raise PolicyCliError("--resume-push takes one user's address")
        _resume_push(addresses[0])
        return
    if len(addresses) > 1:
        _users(addresses, mode, until.date() if until else None, reason)
        return
    email = addresses[0]
    target = _find_user(email)
    changed = _change(policy_settings.set_user_requirement, target.id, mode, until.date() if until else None, reason)
    db.session.expire_all()
    target = _find_user(email)
    org = db.session.get(Organization, target.org_id)
    now_status = status(target, org, _today())
    label = _mode_label(mode, target)
    grace = f"; {_grace_standing_text(target, org)}" if now_status == TwoFactorStatus.REQUIRED_NOT_SET_UP else ""
    click.echo(f"{target.email}: {'now' if changed else 'already'} {label}; status {now_status.value} "
               f"({SHIELD_TEXT[now_status]}){grace}")


def _mode_label(mode: str, target) -> str:
    label = {"required": "required", "exempt": "exempt", "follow": "following the organization"}[mode]
    if mode == "exempt" and target.exempt_until:
        label += f" until {target.exempt_until.isoformat()} (that day included, UTC)"
    return label


def _addresses(email: str | None, emails: tuple[str, ...], emails_from) -> list[str]:
    """The addresses given, in order, each once (as typed: `_find_user` matches them): EMAIL,
    every --email, then --emails-from's lines (blank lines and lines starting with # left out)."""
    given = ([email] if email is not None else []) + list(emails)
    if emails_from is not None:
        try:
            lines = emails_from.read().splitlines()
        except (UnicodeDecodeError, OSError) as exc:
            raise PolicyCliError(f"cannot read the addresses: {exc}") from None
        given += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not given:
        raise PolicyCliError("give the user's address: EMAIL, --email EMAIL or --emails-from FILE")
    seen, addresses = set(), []
    for address in given:
        address = address.strip()
        if not address or "\x00" in address:
            raise PolicyCliError(f"not an address: {address!r}")
        if address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def _users(addresses: list[str], mode: str, until: date | None, reason: str | None) -> None:
    """Several users at once (idp.policy.settings.set_users_requirement, one transaction): every
    address is looked up first, and one that names no user changes nothing for anyone."""
    from idp.db import db
    from idp.models import User

    unknown, targets = [], {}
    for address in addresses:
        try:
            found = _find_user(address)
        except PolicyCliError:
            unknown.append(address)
            continue
        targets[found.id] = found.email
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise PolicyCliError(f"unknown user {unknown[0]!r}{more}; nothing changed")
    try:
        done = policy_settings.set_users_requirement({user_id: None for user_id in targets}, mode, until, reason,
                                                     policy_settings.Actor.cli())
    except policy_settings.PolicyError as exc:
        raise PolicyCliError(f"{exc}; nothing changed") from None
    db.session.expire_all()
    changed = set(done.changed)
    for found in db.session.scalars(select(User).where(User.id.in_(list(targets))).order_by(User.id)):
        click.echo(f"{found.email}: {'now' if found.id in changed else 'already'} {_mode_label(mode, found)}")
    click.echo(f"{len(done.changed)} changed, {len(done.unchanged)} already so")


def _grace_standing_text(target, org) -> str:
    """What the login does with a user required without a factor, as the admin user page says it."""
    from idp.db import utcnow
    from idp.policy.decide import grace_standing

    standing = grace_standing(target, org, utcnow())
    if standing.withdrawn:
        return "no grace (an administrator withdrew the second factors): must set up at next login"
    if not standing.configured:
        return "no grace period: must set up at next login"
    if not standing.running:
        return "grace period over: must set up at next login"
    parts = []
    if standing.ends_at is not None:
        parts.append(f"until {standing.ends_at.isoformat(sep=' ', timespec='minutes')} UTC")
    if standing.logins is not None:
        parts.append(f"{standing.logins_left} login{'s' if standing.logins_left != 1 else ''} left")
    return "in the grace period " + ", ".join(parts) + " (may put off setting it up)"


def _resume_push(email: str) -> None:
    """`idp policy user EMAIL --resume-push`: the admin page's "Resume push approvals"."""
    target = _find_user(email)
    suspended_at = target.push_suspended_at
    changed = _change(policy_settings.clear_push_suspension, target.id)
    if changed:
        since = f" (suspended since {suspended_at.isoformat(sep=' ', timespec='minutes')} UTC)" if suspended_at else ""
        click.echo(f"{target.email}: push approvals resumed{since}")
    else:
        click.echo(f"{target.email}: push approvals are not suspended; nothing to change")
