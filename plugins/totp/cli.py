"""`idp factor totp import`: register an existing TOTP secret for a user moving from another provider.

The secret is read from standard input (never from the command line, where it would
land in shell history and process lists). Bad input exits non-zero with one line on
stderr and creates nothing.
"""
from __future__ import annotations

import sys

import click

from idp.factors.cli import RECOVERY_CODES_NOTE, fail, with_app_context

from idp_plugins.totp import otp
from idp_plugins.totp.otp import parse_secret


# The longest secret, 64 bytes, is 103 base32 characters: room to spare for the spaces, dashes and
# line breaks an export adds, and nothing like the megabytes a wrong file piped in would be.
MAX_STDIN_BYTES = 1024


def read_secret_text() -> str:
    """Standard input as text, at most MAX_STDIN_BYTES of it (one byte more is read, to tell)."""
    if sys.stdin is None:  # `<&-` (click's get_binary_stream would raise a RuntimeError)
        raise ValueError("standard input is closed: no secret to read")
    data = click.get_binary_stream("stdin").read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise ValueError(f"standard input holds more than {MAX_STDIN_BYTES} bytes: not a TOTP secret")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("standard input is not UTF-8 text") from None


@click.group(name="totp", help="Authenticator app (TOTP) credentials.")
def totp_group() -> None:
    pass


@totp_group.command(name="import")
@click.option("--user", "email", required=True, help="E-mail of the user receiving the credential.")
@click.option("--label", default="", help="Label shown on the user's security page.")
@click.option("--digits", type=click.Choice(["6", "8"]), default="6", show_default=True)
@click.option("--algorithm", type=click.Choice(sorted(otp.ALGORITHMS), case_sensitive=False), default="SHA1",
              show_default=True)
@click.option("--secret-stdin", is_flag=True, required=True, help="Read the base32 secret from standard input.")
@with_app_context
def import_command(email: str, label: str, digits: str, algorithm: str, secret_stdin: bool) -> None:
    """Register an existing TOTP secret (base32 on standard input) for USER."""
    from idp.factors.directory import (audit, commit, factor_allowed, find_user_by_email, hold_enabled,
                                       owe_recovery_codes)
    from idp.factors.errors import SecretUnavailable
    from idp.factors.registry import current_registry

    if not secret_stdin:
        fail("--secret-stdin is required: the secret is read from standard input")
    from idp.factors import display_text

    label = label.strip()
    if len(label) > 200 or display_text(label) != label:  # (a no-break space is text, as in factor.py)
        fail("--label must be at most 200 characters, without control characters")
    try:
        secret_text = read_secret_text()
        parse_secret(secret_text)  # (a bad secret is told before the user is looked up, as ever)
    except ValueError as exc:
        fail(str(exc))
    user = find_user_by_email(email)
    if user is None:
        fail(f"unknown user {email!r}")
    # The user's lock to the commit: a second import running at once waits, then sees this one's
    # credential; and "disabled" is asked under it, so a disabling committed while this waited is
    # seen (directory.hold_enabled).
    if not hold_enabled(user):  # a new way in, and a notice mail, for an account no one may use
        fail(f"{user.email} is disabled: enable the account first (idp user enable)")
    if "totp" not in current_registry():
        fail("the totp factor is disabled (factors.disabled)")
    if not factor_allowed(user, "totp"):  # (a second factor of a kind the organization refuses)
        fail(f"the organization of {user.email} does not accept totp (idp policy factors)")
    factor = current_registry().get("totp")
    try:
        # The same checks and the same store as `idp user import` (TotpFactor.parse_import).
        prepared = factor.parse_import({"secret": secret_text, "label": label, "digits": int(digits),
                                        "algorithm": algorithm.upper()})
        credential = factor.import_credential(user, prepared)
    except SecretUnavailable as exc:
        fail(f"cannot compare with the user's TOTP credentials: {exc}")
    except ValueError as exc:
        fail(f"{exc}: nothing imported")
    # No recovery codes here (the operator must never see them): the user's next sign-in shows them.
    owed = owe_recovery_codes(user)
    audit("factor.totp.imported", user, actor="cli",
          details={"factor": "totp", "credential_id": credential.id, "label": credential.label, "digits": int(digits),
                   "algorithm": algorithm.upper(), "recovery_codes_owed": owed})
    commit()
    click.echo(f"imported TOTP credential {credential.id} ({credential.label}) for {user.email}")
    if owed:
        click.echo(RECOVERY_CODES_NOTE.format(email=user.email))
