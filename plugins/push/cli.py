"""`idp factor push activate`: a one-time activation for a user, as the security page's QR holds it."""
from __future__ import annotations

import json
import re
from datetime import timezone

import click

from idp.factors import directory
from idp.factors.cli import fail, with_app_context

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """"10m", "90s", "2h", "1d" or plain seconds -> seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 10m, 90s, 2h)")
    return int(match.group(1)) * _UNIT[match.group(2)]


def push_group(name: str) -> click.Group:
    @click.group(name=name, help="Push approval devices.")
    def group() -> None:
        pass

    @group.command("activate")
    @click.option("--user", "email", required=True, help="the user's e-mail")
    @click.option("--expires-in", default="10m", show_default=True, help="validity, e.g. 10m, 1h, 1d (at most 7d)")
    @click.option("--png", "png", type=click.Path(dir_okay=False, writable=True), help="also write the QR code as PNG")
    @click.option("--json", "as_json", is_flag=True, help='print {"activation_uri", "expires_at"}')
    @with_app_context
    def activate(email: str, expires_in: str, png: str | None, as_json: bool) -> None:
        """Print a one-time push activation URI for USER."""
        from idp.factors.registry import current_registry
        from idp_plugins.push.protocol import utc_now

        try:
            ttl = parse_duration(expires_in)
        except ValueError as exc:
            fail(str(exc))
        if not 60 <= ttl <= 7 * 86400:
            fail("--expires-in must be between 1m and 7d")
        registry = current_registry()
        if name not in registry:
            fail("the push factor is disabled")
        user = directory.find_user_by_email(email)
        if user is None:
            fail(f"no user with e-mail {email!r}")
        factor = registry.get(name)
        act = factor.issue_activation(user, registry.settings.issuer, utc_now(), ttl=ttl)
        if png:
            import segno

            try:
                segno.make(act.uri, error="m").save(png, kind="png", scale=6)
            except OSError as exc:
                factor.challenges.expire(act.id)  # never leave an unseen code behind
                directory.commit()
                fail(f"cannot write {png}: {exc.strerror or exc}; the activation was cancelled")
        expires = act.expires_at.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
        if as_json:
            click.echo(json.dumps({"activation_uri": act.uri, "expires_at": expires}))
        else:
            click.echo(act.uri)

    return group


