"""`idp recovery-qr issue|revoke|list` (CONTRACT.md), also mounted as `idp factor qr_recovery ...`.

    idp recovery-qr issue --user EMAIL [--expires-in 24h] [--png FILE] [--json]
        prints the recovery URI (the QR code's content) and the secret to type at the login;
        --json: {"user", "credential_id", "recovery_uri", "secret", "expires_at"}
    idp recovery-qr revoke --user EMAIL ID
    idp recovery-qr list --user EMAIL [--json]     the user's codes that still work
        --json: [{"credential_id", "expires_at", "issued_by", "created_at"}]

Times are ISO 8601 UTC strings ("2026-12-01T12:00:00Z", idp.factors.cli.iso_utc), in `issue` and
`list` alike, as `idp factor push activate --json` prints them; only the recovery URI's `expires` is
Unix seconds, as in the device protocol.
Audited with actor "cli", like the web's admin actions.
"""
from __future__ import annotations

import json

import click

from idp.factors import directory
from idp.factors.cli import ROW_ID, fail, iso_utc, show_before_commit, validity, with_app_context, write_or_roll_back


def _factor(name: str):
    from idp.factors.registry import current_registry

    registry = current_registry()
    if name not in registry:
        fail("the qr_recovery factor is not enabled")
    return registry.get(name)


def _user(email: str):
    user = directory.find_user_by_email(email)
    if user is None:
        fail(f"unknown user {email!r}")
    return user


def recovery_qr_group(name: str = "qr_recovery") -> click.Group:
    @click.group(name="recovery-qr", help="Recovery QR codes issued to users (single use, expiring).")
    def group() -> None:
        pass

    @group.command("issue")
    @click.option("--user", "email", required=True, help="the user's e-mail")
    @click.option("--expires-in", default=None,
                  help="validity, e.g. 24h, 90m, 2d (at most factors.qr_recovery.max_ttl, 7d)  "
                       "[default: factors.qr_recovery.default_ttl, 24h]")
    @click.option("--png", "png", type=click.Path(dir_okay=False, writable=True), help="also write the QR code as PNG")
    @click.option("--json", "as_json", is_flag=True, help="print one JSON document")
    @with_app_context
    def issue(email: str, expires_in: str | None, png: str | None, as_json: bool) -> None:
        """Issue a one-time recovery QR code for USER (shown once)."""
        factor = _factor(name)
        ttl = validity(expires_in, default=factor.qr_settings.default_ttl, maximum=factor.qr_settings.max_ttl)
        user = _user(email)
        # Asked under the user's lock, held to the commit (as `factor push activate` and `factor totp
        # import` refuse): a disabling committed while this waited is seen, rather than a code
        # issued after the disabling revoked the user's codes.
        if not directory.hold_enabled(user):
            fail(f"{user.email} is disabled: enable the account first (idp user enable)")
        # Committed once the PNG, if asked for, and the output are written: a code nobody could see
        # is never left behind (nor its notice to the user).
        from idp_plugins.qr_recovery.issuing import OPERATOR

        issued = factor.issue(user, actor=OPERATOR, ttl=ttl, commit=False)
        if png:
            write_or_roll_back(png, issued.png())
        if as_json:
            show_before_commit(json.dumps({"user": user.email, "credential_id": issued.credential.id,
                                           "recovery_uri": issued.uri, "secret": issued.secret,
                                           "expires_at": iso_utc(issued.expires_at)}))
        else:
            show_before_commit(issued.uri, err_text=f"secret: {issued.secret}  "
                                                    f"(expires {iso_utc(issued.expires_at)}, one use)")
        directory.commit()

    @group.command("revoke")
    @click.option("--user", "email", required=True, help="the user's e-mail")
    @click.argument("credential_id", type=ROW_ID)
    @with_app_context
    def revoke(email: str, credential_id: int) -> None:
        """Revoke the user's recovery QR code ID (see list)."""
        factor = _factor(name)
        user = _user(email)
        if factor.revoke(user, credential_id, actor="cli") is None:
            fail(f"no live recovery QR code {credential_id} for {email}")
        click.echo(f"revoked recovery QR code {credential_id}")

    @group.command("list")
    @click.option("--user", "email", required=True, help="the user's e-mail")
    @click.option("--json", "as_json", is_flag=True, help="print a JSON array")
    @with_app_context
    def list_(email: str, as_json: bool) -> None:
        """The user's recovery QR codes that still work."""
        from idp_plugins.qr_recovery.issuing import expiry_of

        factor = _factor(name)
        rows = [{"credential_id": c.id, "expires_at": iso_utc(expiry_of(c)),
                 "issued_by": c.public.get("issued_by", ""), "created_at": iso_utc(c.created_at)}
                for c in factor.outstanding(_user(email))]
        if as_json:
            click.echo(json.dumps(rows))
        else:
            for row in rows:
                click.echo(f"{row['credential_id']}  issued by {row['issued_by'] or '?'}  expires {row['expires_at']}")

    return group
