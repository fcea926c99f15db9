"""Seed the bench's TOTP users through the real `idp user add` and `idp factor totp import` commands.

Run by bench/run.py with the target's IDP_* environment; reads JSON lines
`{"email": ..., "password": ..., "secret": BASE32}` on stdin. Each user is created and given its
TOTP credential by invoking the `idp` click commands themselves (same options, password and secret
on their standard input), all in this one process with one app: a process per command costs
about 0.7 s, which for a few hundred users would be minutes of set-up per target. Each then holds
recovery codes, as after their first login.
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    from click.testing import CliRunner

    import idp.cli as idp_cli

    app = idp_cli._create_app()
    idp_cli._create_app = lambda: app  # every invocation reuses the one app (migrations, keys loaded once)
    runner = CliRunner()
    count = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        user = json.loads(line)
        for argv, stdin in (
            (["user", "add", "--org", user["org"], "--email", user["email"], "--name", user["email"].split("@")[0],
              "--password-stdin"], user["password"] + "\n"),
            (["factor", "totp", "import", "--user", user["email"], "--secret-stdin"], user["secret"] + "\n"),
        ):
            result = runner.invoke(idp_cli.cli, argv, input=stdin, catch_exceptions=True)
            if result.exit_code != 0:
                detail = (result.output or "").strip() or repr(result.exception)
                print(f"idp {' '.join(argv[:3])} failed for {user['email']}: {detail[-300:]}", file=sys.stderr)
                return 1
        _recovery_codes_received(app, user["email"])
        count += 1
    print(f"seeded {count} TOTP users")
    return 0


def _recovery_codes_received(app, email: str) -> None:
    """The user's recovery codes made (and forgotten), as a first login shows them to a user whose
    authenticator was imported (idp.factors.directory.owe_recovery_codes): the bench measures the
    logins of users who hold theirs, the common case, not that one-time page."""
    from sqlalchemy import select

    from idp.account import service
    from idp.db import db
    from idp.models import User

    with app.app_context():
        service.regenerate_recovery_codes(db.session.scalar(select(User).where(User.email == email)),
                                          audit_event=False)
        db.session.commit()


if __name__ == "__main__":
    sys.exit(main())
