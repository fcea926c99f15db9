"""`idp policy ...`: the operators' door to the 2FA policy (CONTRACT.md, "The `idp` command").

    idp policy show --org ORG [--json]
    idp policy require-all --org ORG on|off
    idp policy factors --org ORG all | NAME [NAME ...]
    idp policy grace --org ORG [--days N] [--logins N]
    idp policy push-recovery --org ORG on|off
    idp policy user EMAIL --require | --exempt [--until YYYY-MM-DD] [--reason TEXT] | --follow-org
                          | --resume-push

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
@click.argument("email")
@click.option("--require", is_flag=True, help="Always require 2FA for this user.")
@click.option("--exempt", is_flag=True, help="Waive 2FA for this user.")
@click.option("--follow-org", is_flag=True, help="Follow the organization's rule.")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="With --exempt: the last exempt day.")
@click.option("--reason", metavar="TEXT", help="With --exempt: why (kept in the audit log).")
@click.option("--resume-push", is_flag=True,
              help="Resume push approvals suspended by a fraud report (on its own).")
@_in_app
def user(email: str, require: bool, exempt: bool, follow_org: bool, until: datetime | None,
         reason: str | None, resume_push: bool) -> None:
    """Set one user's 2FA: --require, --exempt [--until DATE] [--reason TEXT], or --follow-org;
    or --resume-push after a fraud report."""
    from idp.db import db
    from idp.models import Organization

    chosen = [m for m, flag in (("required", require), ("exempt", exempt), ("follow", follow_org),
                                ("resume-push", resume_push)) if flag]
    if len(chosen) != 1:
        raise PolicyCliError("choose exactly one of --require, --exempt, --follow-org or --resume-push")
    mode = chosen[0]
    if mode == "resume-push":
        if until is not None or reason is not None:
            raise PolicyCliError("--until and --reason go with --exempt only")
        _resume_push(email)
        return
    if mode != "exempt" and (until is not None or reason is not None):
        raise PolicyCliError("--until and --reason go with --exempt only")
    target = _find_user(email)
    changed = _change(policy_settings.set_user_requirement, target.id, mode, until.date() if until else None, reason)
    db.session.expire_all()
    target = _find_user(email)
    org = db.session.get(Organization, target.org_id)
    now_status = status(target, org, _today())
    label = {"required": "required", "exempt": "exempt", "follow": "following the organization"}[mode]
    if mode == "exempt" and target.exempt_until:
        label += f" until {target.exempt_until.isoformat()} (that day included, UTC)"
    grace = f"; {_grace_standing_text(target, org)}" if now_status == TwoFactorStatus.REQUIRED_NOT_SET_UP else ""
    click.echo(f"{target.email}: {'now' if changed else 'already'} {label}; status {now_status.value} "
               f"({SHIELD_TEXT[now_status]}){grace}")


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
