"""`idp recovery-qr ...` (CONTRACT.md): the qr_recovery plugin's commands at the top level.

The commands themselves belong to the plugin (`QrRecoveryFactor.cli_command`, also
mounted as `idp factor qr_recovery`); this group only finds them, through the app's
factor registry when an app context is pushed (the root `idp` group pushes one for
mounted groups) and through the entry points otherwise, so the core never imports a
plugin by name. Without the plugin installed and enabled the group says so.
"""
from __future__ import annotations

import click

FACTOR = "qr_recovery"


def _plugin_group() -> click.Group | None:
    from flask import has_app_context

    from idp.factors.registry import cli_commands, current_registry

    if has_app_context():
        registry = current_registry()
        return registry.get(FACTOR).cli_command() if FACTOR in registry else None
    return cli_commands().get(FACTOR)


class RecoveryQrGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        group = _plugin_group()
        return sorted(group.commands) if group is not None else []

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        group = _plugin_group()
        if group is None:
            raise click.ClickException("recovery QR codes are not available: the qr_recovery factor is not "
                                       "installed or is disabled (factors.disabled)")
        return group.get_command(ctx, name)


recovery_qr = RecoveryQrGroup(name="recovery-qr",
                              help="Recovery QR codes issued to users: issue (shown once), list, revoke.")
