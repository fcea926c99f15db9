"""A device without a browser signs in (RFC 8628, the device authorization grant): what a TV app
or a command-line tool does, in one file, through the provider's public protocol only.

    python examples/device/signin.py --client-id CLIENT_ID [--issuer URL] [--scope "openid profile email"]

It reads the provider's discovery document, asks the device authorization endpoint for codes,
prints the code and where to type it (and the link that has it in it), then polls the token
endpoint as RFC 8628 3.4-3.5 says: every `interval` seconds, 5 more after a `slow_down`, until
the tokens come or the answer is `access_denied` or `expired_token`. It checks the ID token
against the JWKS (signature, issuer, audience, expiry) and prints its claims as JSON, with
UserInfo's answer when its `sub` is the ID token's. The discovery document must name the
issuer it was fetched from (`--issuer`), as the demo relying party checks too. A public client
(`idp client add --public --grant-type device_code`) needs nothing more; a confidential one
passes --client-secret. `make run` registers one ("Demo device") and prints the command.

Exit status: 0 signed in, 1 refused (denied, expired, an error from the provider), 2 usage.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sign a device in with the device authorization grant.")
    parser.add_argument("--issuer", default="http://127.0.0.1:5000",
                        help="the provider's issuer URL, which its discovery document must name (default: %(default)s)")
    parser.add_argument("--client-id", required=True,
                        help="a client registered with --grant-type device_code (`make run` prints the demo's)")
    parser.add_argument("--client-secret", default=None, help="a confidential client's secret (none for --public)")
    parser.add_argument("--scope", default="openid profile email", help="scopes to ask for (default: %(default)s)")
    args = parser.parse_args(argv)

    issuer = args.issuer.rstrip("/")
    metadata = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    if metadata.get("issuer") != issuer:
        # OIDC Discovery 4.3: otherwise its endpoints and keys may be another provider's, and the
        # ID token's `iss` would be checked against what that other provider says.
        print(f"refused: the discovery document names issuer {metadata.get('issuer')!r}, not {issuer!r}",
              file=sys.stderr)
        return 1
    auth = (args.client_id, args.client_secret) if args.client_secret else None
    identity = {} if auth else {"client_id": args.client_id}

    answer = requests.post(metadata["device_authorization_endpoint"], data={"scope": args.scope, **identity},
                           auth=auth, timeout=10)
    codes = answer.json()
    if answer.status_code != 200:
        print(f"refused: {codes.get('error')}: {codes.get('error_description', '')}", file=sys.stderr)
        return 1
    print(f"To sign in, open {codes['verification_uri']} and type the code {codes['user_code']}", flush=True)
    print(f"(or open {codes['verification_uri_complete']})", flush=True)

    interval, deadline = codes.get("interval", 5), time.monotonic() + codes["expires_in"]
    while time.monotonic() < deadline:
        time.sleep(interval)
        polled = requests.post(metadata["token_endpoint"], auth=auth, timeout=10,
                               data={"grant_type": GRANT_TYPE, "device_code": codes["device_code"], **identity})
        body = polled.json()
        if polled.status_code == 200:
            return show(metadata, args.client_id, body)
        error = body.get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            print(f"refused: {error}: {body.get('error_description', '')}", file=sys.stderr)
            return 1
    print("refused: the code expired before anyone signed in", file=sys.stderr)
    return 1


def show(metadata: dict, client_id: str, tokens: dict) -> int:
    keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    token = jwt.decode(tokens["id_token"], keys, algorithms=["ES256", "RS256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": metadata["issuer"]},
                          aud={"essential": True, "value": client_id}, exp={"essential": True}).validate(token.claims)
    userinfo = requests.get(metadata["userinfo_endpoint"], timeout=10,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    if userinfo.get("sub") != token.claims["sub"]:
        userinfo = None  # about someone else than the ID token: not to be used (OIDC Core 5.3.4)
    print(json.dumps({"id_token_claims": token.claims, "userinfo": userinfo,
                      "refresh_token": bool(tokens.get("refresh_token"))}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
