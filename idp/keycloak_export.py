"""A Keycloak realm export's users as `idp user import` records (`idp user import --format keycloak`).

What Keycloak keeps, read as its own code writes it:

- a password credential: `secretData` `{"value": B64, "salt": B64}` and `credentialData`
  `{"hashIterations": N, "algorithm": ...}`. The PBKDF2 providers (`pbkdf2` = SHA-1,
  `pbkdf2-sha256`, `pbkdf2-sha512`) derive as many bits as `value` holds (Keycloak's
  Pbkdf2PasswordHashProvider: 512 by default, 256 for pbkdf2-sha256 since Keycloak 24) from the
  password's UTF-8 bytes; stored here as `$pbkdf2-sha256$i=N$SALT$VALUE`. The `argon2` provider
  (Keycloak 24's default) names its type, version, memory and parallelism in
  `additionalParameters`: a PHC string argon2-cffi verifies. A `bcrypt` one (a common Keycloak
  extension) holds the bcrypt string itself;
- an `otp` credential of subType `totp`: `secretData.value` is the secret as text, and the HMAC
  key is its UTF-8 bytes (OTPCredentialModel.getDecodedSecret; the authenticator app's otpauth
  secret is their base32), unless `credentialData.secretEncoding` is `BASE32` (then the value is
  base32 already). `algorithm` is `HmacSHA1`, `HmacSHA256` or `HmacSHA512`.

HOTP and every other credential type (WebAuthn, ...) are left behind, each said in the user's
notes: the user is imported without it. So is a temporary password (the required action
UPDATE_PASSWORD), which Keycloak would have had the user change; other required actions are
said to be dropped. Service accounts (`serviceAccountClientId`) are not
people: skipped, and said so. A user without an e-mail address whose username is one is
imported under the username.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from idp.factors.contract import LABEL_MAX
from idp.security import foreign_hashes
from idp.security.text import display_text

_OTP_ALGORITHMS = {"HmacSHA1": "SHA1", "HmacSHA256": "SHA256", "HmacSHA512": "SHA512"}


def records(document: Any) -> list[tuple[str, Any, list[str]]]:
    """(where, record or Problem or None for a user skipped, notes) per user of the export."""
    from idp.user_import import ImportRefused, Problem

    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, list):
        raise ImportRefused([Problem("file", 'not a Keycloak realm export: no "users" list (export the realm '
                                             "with its users: kc.sh export --realm NAME --users realm_file)")])
    found = []
    for index, user in enumerate(users):
        name = user.get("username") if isinstance(user, dict) else None
        where = f"users[{index}]" + (f" ({name})" if isinstance(name, str) and name.isprintable() else "")
        try:
            found.append((where, *_record(user)))
        except ValueError as exc:
            found.append((where, Problem(where, str(exc)), []))
    return found


def _record(user: Any) -> tuple[dict | None, list[str]]:
    if not isinstance(user, dict):
        raise ValueError("not a JSON object")
    if user.get("serviceAccountClientId"):
        return None, [f"skipped: the service account of client {user['serviceAccountClientId']!r}, not a person"]
    notes: list[str] = []
    email = user.get("email")
    if not email and isinstance(user.get("username"), str) and "@" in user["username"]:
        email = user["username"]
    if not email:
        raise ValueError("no e-mail address (this provider's login name): add one in Keycloak or leave the user out")
    name = " ".join(part for part in (user.get("firstName"), user.get("lastName")) if isinstance(part, str) and part)
    record: dict[str, Any] = {"email": email, "name": name, "email_verified": bool(user.get("emailVerified", False)),
                              "disabled": not user.get("enabled", True)}
    totp: list[dict] = []
    credentials = user.get("credentials") or []
    if not isinstance(credentials, list):
        raise ValueError("credentials is not a list")
    for credential in credentials:
        kind = credential.get("type") if isinstance(credential, dict) else None
        if kind == "password":
            if "password_hash" in record:
                notes.append("a second password credential left behind")
                continue
            record["password_hash"] = _password_hash(credential)
        elif kind == "otp":
            item = _totp(credential, notes)
            if item is None:
                notes.append(f"{_shown(_json(credential, 'credentialData').get('subType', 'otp'))} credential left "
                             "behind (only TOTP is imported)")
            else:
                totp.append(item)
        else:
            notes.append(f"{kind!r} credential left behind (not imported)")
    if totp:
        record["totp"] = totp
    _required_actions(user, record, notes)
    return record, notes


def _required_actions(user: dict, record: dict, notes: list[str]) -> None:
    """What Keycloak was to make the user do at their next login, which this provider cannot ask
    of them. A temporary password (UPDATE_PASSWORD, what Keycloak sets with an admin's temporary
    one) is known to whoever set it, maybe mailed in clear: kept, it would be the user's for
    good, never changed. It is left behind (the user sets one by the reset link); any other
    action is said to be dropped."""
    actions = user.get("requiredActions") or []
    if not isinstance(actions, list):
        raise ValueError("requiredActions is not a list")
    # (A realm file written for import may flag the credential itself, `"temporary": true`: the same.)
    temporary = any(isinstance(c, dict) and c.get("type") == "password" and c.get("temporary") is True
                    for c in user.get("credentials") or ())
    for action in actions + (["UPDATE_PASSWORD"] if temporary and "UPDATE_PASSWORD" not in actions else []):
        if action == "UPDATE_PASSWORD" and "password_hash" in record:
            del record["password_hash"]
            notes.append("a temporary password (Keycloak's required action UPDATE_PASSWORD) left behind: "
                         "the user sets one by the reset link")
        elif action != "UPDATE_PASSWORD":
            notes.append(f"required action {_shown(action)} not carried over")


def _shown(value: Any) -> str:
    """A string of the export as a warning prints it: as it is when printable, else quoted with its
    control characters escaped (repr), so that none reaches the operator's terminal (an escape
    sequence there could rewrite the lines around it)."""
    return value if isinstance(value, str) and value.isprintable() else repr(value)


def _json(credential: dict, key: str) -> dict:
    """`secretData` / `credentialData`: JSON documents inside strings (objects in some exports)."""
    value = credential.get(key) or "{}"
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"a credential's {key} is not JSON") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"a credential's {key} is not a JSON object")
    return parsed


def _password_hash(credential: dict) -> str:
    secret, data = _json(credential, "secretData"), _json(credential, "credentialData")
    algorithm, iterations = data.get("algorithm"), data.get("hashIterations")
    value, salt = secret.get("value"), secret.get("salt")
    if algorithm == "bcrypt" and isinstance(value, str):
        return value
    if not isinstance(value, str) or not isinstance(salt, str) or type(iterations) is not int:
        raise ValueError("a password credential without value, salt or hashIterations")
    try:
        if algorithm == "argon2":
            given = data.get("additionalParameters") or {}
            if not isinstance(given, dict):
                raise ValueError("argon2 additionalParameters is not a JSON object")
            # (Keycloak writes each as a list of one string: {"memory": ["7168"], ...}.)
            params = {k: (v[0] if isinstance(v, list) and v else v) for k, v in given.items()}
            return foreign_hashes.keycloak_argon2(str(params.get("type", "id")), str(params.get("version", "1.3")),
                                                  _integer(params, "memory", 0), iterations,
                                                  _integer(params, "parallelism", 1), salt, value)
        return foreign_hashes.keycloak_pbkdf2(str(algorithm), iterations, salt, value)
    except (foreign_hashes.HashRefused, ValueError) as exc:
        raise ValueError(f"password: {exc}") from None


def _integer(params: dict, key: str, default: int) -> int:
    """An argon2 parameter as Keycloak writes it (a decimal string, or a number); ValueError else."""
    value = params.get(key, default)
    if type(value) is int or (isinstance(value, str) and value.strip().isdigit()):
        return int(value)
    raise ValueError(f"argon2 {key} is not a whole number ({value!r})")


def _totp(credential: dict, notes: list[str]) -> dict | None:
    """The TOTP item for this otp credential, None for HOTP (left behind). Its userLabel is display
    text (control characters out) cut to this provider's LABEL_MAX (Keycloak allows 255): a
    name is no reason to refuse the user, and a cut one is said in `notes`."""
    secret, data = _json(credential, "secretData"), _json(credential, "credentialData")
    if data.get("subType", "totp") != "totp":
        return None
    value = secret.get("value")
    if not isinstance(value, str) or not value:
        raise ValueError("an otp credential without a secret value")
    if str(data.get("secretEncoding") or "").upper() == "BASE32":
        secret_b32 = value
    elif data.get("secretEncoding"):
        raise ValueError(f"an otp credential's unknown secretEncoding {data['secretEncoding']!r}")
    else:
        secret_b32 = base64.b32encode(value.encode("utf-8")).decode()
    algorithm = data.get("algorithm", "HmacSHA1")
    label = credential.get("userLabel") or ""
    if isinstance(label, str):  # (anything else goes on as it is, for the totp plugin to refuse)
        label = display_text(label)
        if len(label) > LABEL_MAX:
            label = label[:LABEL_MAX].rstrip()
            notes.append(f"the otp credential's userLabel cut to {LABEL_MAX} characters (Keycloak allows 255)")
    return {"secret": secret_b32, "label": label,
            # (Anything but Keycloak's names goes on as it is, for the totp plugin to refuse.)
            "algorithm": _OTP_ALGORITHMS.get(algorithm, algorithm) if isinstance(algorithm, str) else algorithm,
            "digits": data.get("digits", 6), "period": data.get("period", 30)}
