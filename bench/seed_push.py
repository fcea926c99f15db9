"""Seed the push bench's users through the real `idp user add` and `idp factor push activate`.

Run by bench/push_latency.py with the target's IDP_* environment; reads JSON lines
`{"org", "email", "password"}` on stdin and prints one JSON line `{"email", "activation_uri"}`
per user. The devices are registered afterwards over HTTP (protocol v1) by the bench itself,
which keeps their private keys. One process and one app for all the commands (as seed_totp.py):
a process per command would cost minutes for a thousand users.
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    from click.testing import CliRunner

    import idp.cli as idp_cli

    app = idp_cli._create_app()
    idp_cli._create_app = lambda: app
    runner = CliRunner()
    for line in sys.stdin:
        if not line.strip():
            continue
        user = json.loads(line)
        add = ["user", "add", "--org", user["org"], "--email", user["email"], "--name", user["email"].split("@")[0],
               "--password-stdin"]
        result = runner.invoke(idp_cli.cli, add, input=user["password"] + "\n", catch_exceptions=True)
        if result.exit_code != 0:
            print(f"idp user add failed for {user['email']}: {(result.output or repr(result.exception))[-300:]}",
                  file=sys.stderr)
            return 1
        activate = ["factor", "push", "activate", "--user", user["email"], "--expires-in", "2h", "--json"]
        result = runner.invoke(idp_cli.cli, activate, catch_exceptions=True)
        if result.exit_code != 0:
            print(f"idp factor push activate failed for {user['email']}: "
                  f"{(result.output or repr(result.exception))[-300:]}", file=sys.stderr)
            return 1
        uri = json.loads(result.output.strip().splitlines()[-1])["activation_uri"]
        print(json.dumps({"email": user["email"], "activation_uri": uri}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
