"""`idp factor push activate`: a one-time activation for a user, as the security page's QR holds it."""
from __future__ import annotations

import json

import click

from idp.factors import directory
from idp.factors.cli import (RECOVERY_CODES_NOTE, fail, iso_utc, show_before_commit, validity, with_app_context,
                             write_or_roll_back)

from idp_plugins.push.settings import MAX_ACTIVATION_TTL


def png_of(uri: str) -> bytes:
    """The QR code of `uri` as PNG bytes."""
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=6)
    return buffer.getvalue()


def push_group(name: str) -> click.Group:
    @click.group(name=name, help="Push approval devices.")
    def group() -> None:
        pass

    @group.command("activate")
    @click.option("--user", "email", required=True, help="the user's e-mail")
    @click.option("--expires-in", default=None,
                  help="validity, e.g. 10m, 1h, 1d (at most 7d)  [default: factors.push.activation_ttl, 10m]")
    @click.option("--png", "png", type=click.Path(dir_okay=False, writable=True), help="also write the QR code as PNG")
    @click.option("--json", "as_json", is_flag=True, help='print {"activation_uri", "expires_at"}')
    @with_app_context
    def activate(email: str, expires_in: str | None, png: str | None, as_json: bool) -> None:
        """Print a one-time push activation URI for USER."""
        from idp.factors.registry import current_registry
        from idp_plugins.push import activation
        from idp_plugins.push.protocol import utc_now

        registry = current_registry()
        if name not in registry:
            fail("the push factor is disabled")
        factor = registry.get(name)
        ttl = validity(expires_in, default=factor.push_settings.activation_ttl, maximum=MAX_ACTIVATION_TTL)
        user = directory.find_user_by_email(email)
        if user is None:
            fail(f"unknown user {email!r}")
        # The user's lock to the commit (before the activation's row, the order every push write
        # takes them in), and "disabled" asked under it: a disabling (which holds the row from its
        # UPDATE to its commit, and expires the codes it finds) committed while this waited is
        # seen. Asked before, a code minted after the disabling's sweep was left live.
        if not directory.hold_enabled(user):
            fail(f"{user.email} is disabled: enable the account first (idp user enable)")
        if not directory.factor_allowed(user, name):  # (the phone's registration would be refused)
            fail(f"the organization of {user.email} does not accept push (idp policy factors)")
        # Nothing is committed until the PNG, if asked for, is written: a code nobody could see
        # is never left behind.
        act = activation.issue(factor.challenges, user, ttl=ttl, issuer=registry.settings.issuer, now=utc_now())
        if png:
            write_or_roll_back(png, png_of(act.uri))
        # The phone registers outside the pages that issue recovery codes: once it has, the user's
        # next sign-in shows a set (activation.register), never this command's output.
        owed = directory.recovery_codes_due(user)
        # An operator's code binds a phone to someone's account: the admins see who issued it.
        activation.record_issued(user, act, actor="cli")
        # Shown before the commit, for the same reason as the PNG is written first. (The note on
        # stderr: stdout holds the URI alone, for scripts.)
        note = (RECOVERY_CODES_NOTE.format(email=user.email) + " after the phone is registered") if owed else None
        if as_json:
            show_before_commit(json.dumps({"activation_uri": act.uri, "expires_at": iso_utc(act.expires_at),
                                           "recovery_codes_at_next_sign_in": owed}))
        else:
            show_before_commit(act.uri, err_text=note)
        directory.commit()

    return group


