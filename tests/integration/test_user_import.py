"""`idp user import`: users moving from Keycloak, authentik (Django) or elsewhere keep their passwords
and authenticator apps (idp.user_import, idp.security.foreign_hashes, idp.keycloak_export).

Each accepted hash format signs in over HTTP with its own password, is replaced by argon2id by
that login, and a wrong password is refused and counted as any other. A Keycloak realm export,
its hashes computed as Keycloak computes them, signs in with password then TOTP. A bad file
imports nothing and names every bad line; --dry-run writes nothing.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json

import bcrypt
import pyotp
import pytest
from argon2 import PasswordHasher, low_level
from sqlalchemy import func, select

from fixtures.oidc import FAST_ARGON2, FormBrowser, past_new_recovery_codes

PASSWORD = "correct horse battery staple"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _pbkdf2(digest: str, salt: bytes, iterations: int, length: int, password: str = PASSWORD) -> bytes:
    return hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations, dklen=length)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _bcrypt(prefix: str) -> str:
    made = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return prefix + made[4:]


HASHES = {
    "bcrypt-2b": lambda: _bcrypt("$2b$"),
    "bcrypt-2a": lambda: _bcrypt("$2a$"),
    "bcrypt-2y": lambda: _bcrypt("$2y$"),
    "django-bcrypt_sha256": lambda: "bcrypt_sha256$" + bcrypt.hashpw(
        binascii.hexlify(hashlib.sha256(PASSWORD.encode()).digest()), bcrypt.gensalt(4)).decode(),
    "django-pbkdf2_sha256": lambda: "pbkdf2_sha256$1200$NaClNaCl$" + _b64(_pbkdf2("sha256", b"NaClNaCl", 1200, 32)),
    "django-pbkdf2_sha1": lambda: "pbkdf2_sha1$1200$NaClNaCl$" + _b64(_pbkdf2("sha1", b"NaClNaCl", 1200, 20)),
    "keycloak-pbkdf2-sha256": lambda: f"$pbkdf2-sha256$i=1200${_b64(b'0123456789abcdef')}$"
                                      + _b64(_pbkdf2("sha256", b"0123456789abcdef", 1200, 32)),
    "keycloak-pbkdf2-sha512": lambda: f"$pbkdf2-sha512$i=1200${_b64(b'0123456789abcdef')}$"
                                      + _b64(_pbkdf2("sha512", b"0123456789abcdef", 1200, 64)),
    "argon2i": lambda: low_level.hash_secret(PASSWORD.encode(), b"saltsaltsalt", time_cost=1, memory_cost=1024,
                                             parallelism=1, hash_len=32, type=low_level.Type.I).decode(),
    "argon2id-other-parameters": lambda: PasswordHasher(time_cost=2, memory_cost=2048).hash(PASSWORD),
    "django-argon2": lambda: "argon2" + PasswordHasher(time_cost=2, memory_cost=2048).hash(PASSWORD),
}


# --------------------------------------------------------------------------- helpers

def _import(idp, server, tmp_path, lines, *extra: str, file_format: str = "jsonl"):
    path = tmp_path / ("export.json" if file_format == "keycloak" else "users.jsonl")
    text = json.dumps(lines) if file_format == "keycloak" else "\n".join(
        line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    path.write_text(text)
    return idp("user", "import", "--org", "Acme", "--format", file_format, *extra, str(path),
               database_url=server.database_url)


def _user(server, email: str):
    from idp.db import db
    from idp.models import User

    with server.context():
        row = db.session.scalars(select(User).where(User.email == email)).one_or_none()
        if row is not None:
            db.session.expunge(row)
        return row


def _count(server, model, *where) -> int:
    from idp.db import db

    with server.context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _events(server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def _sign_in(server, rp, email: str, password: str) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    browser.login(email, password)
    return browser


# --------------------------------------------------------------------------- passwords

@pytest.mark.parametrize("scheme", sorted(HASHES))
def test_each_hash_format_signs_in_and_is_upgraded_to_argon2id(scheme, live_server, seeded, rp_factory, idp,
                                                                tmp_path):
    from idp.models import User

    imported = HASHES[scheme]()
    result = _import(idp, live_server, tmp_path, [{"email": "moved@acme.test", "name": "Moved",
                                                   "password_hash": imported}])
    assert result.returncode == 0, result.stderr
    assert "imported 1 user(s)" in result.stdout
    stored = _user(live_server, "moved@acme.test").password_hash
    assert stored == imported.removeprefix("argon2")  # kept as it came (Django's "argon2" prefix dropped)

    rp = rp_factory(seeded.first_party)
    wrong = _sign_in(live_server, rp, "moved@acme.test", "not the password")
    assert wrong.page.status == 401 and "Incorrect e-mail or password." in wrong.page.text
    [failed] = _events(live_server, "login.password_failed")
    assert failed.details["reason"] == "wrong_password"
    assert _user(live_server, "moved@acme.test").password_hash == stored  # a wrong password upgrades nothing

    browser = _sign_in(live_server, rp, "moved@acme.test", PASSWORD)
    assert browser.callback_params()["code"], browser.page.text[:1500]
    upgraded = _user(live_server, "moved@acme.test").password_hash
    assert upgraded.startswith("$argon2id$") and upgraded != stored
    assert PasswordHasher().verify(upgraded, PASSWORD)
    assert not live_server.app.extensions["idp.passwords"].needs_rehash(upgraded)
    [event] = _events(live_server, "login.password_rehashed")
    assert event.details["to"]["type"] == "id" and event.details["to"]["time_cost"] == \
        FAST_ARGON2["security.argon2_time_cost"]
    assert event.details["from"]["type"] in {"bcrypt", "bcrypt_sha256", "pbkdf2_sha256", "pbkdf2_sha1", "pbkdf2_sha512", "i", "id"}
    # And the password still signs in, now against argon2id, with nothing more to upgrade.
    again = _sign_in(live_server, rp, "moved@acme.test", PASSWORD)
    assert again.callback_params()["code"] and len(_events(live_server, "login.password_rehashed")) == 1
    assert _count(live_server, User, User.email == "moved@acme.test") == 1


def test_wrong_passwords_on_an_imported_hash_lock_the_account_as_usual(live_server, seeded, rp_factory, idp,
                                                                        tmp_path):
    assert _import(idp, live_server, tmp_path,
                   [{"email": "moved@acme.test", "password_hash": HASHES["bcrypt-2b"]()}]).returncode == 0
    rp = rp_factory(seeded.first_party)
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    statuses = [browser.login("moved@acme.test", f"guess {i}").status for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429
    assert len(_events(live_server, "login.locked_out")) == 1


def test_a_user_without_a_password_hash_signs_in_with_none(live_server, seeded, rp_factory, idp, tmp_path):
    assert _import(idp, live_server, tmp_path, [{"email": "new@acme.test"}]).returncode == 0
    assert _user(live_server, "new@acme.test").password_hash is None
    browser = _sign_in(live_server, rp_factory(seeded.first_party), "new@acme.test", PASSWORD)
    assert browser.page.status == 401 and "Incorrect e-mail or password." in browser.page.text


# --------------------------------------------------------------------------- users and TOTP

def test_fields_totp_and_the_2fa_counts(live_server, seeded, rp_factory, idp, tmp_path):
    result = _import(idp, live_server, tmp_path, [
        {"email": "Carol@Acme.test", "name": "Carol", "role": "admin", "email_verified": False,
         "password_hash": HASHES["bcrypt-2b"](),
         "totp": [{"secret": TOTP_SECRET, "label": "Carol's phone", "algorithm": "SHA1", "digits": 6, "period": 30}]},
        {"email": "dave@acme.test", "disabled": True},
    ])
    assert result.returncode == 0, result.stderr
    assert "second factors: totp 1" in result.stdout and "1 user(s) will be shown a new set of recovery codes" \
        in result.stdout
    carol, dave = _user(live_server, "carol@acme.test"), _user(live_server, "dave@acme.test")
    assert (carol.name, carol.role, carol.email_verified, carol.disabled) == ("Carol", "admin", False, False)
    assert carol.second_factor_count == 1 and carol.recovery_codes_owed
    assert (dave.role, dave.disabled, dave.email_verified, dave.second_factor_count) == ("user", True, True, 0)
    events = {e.subject_id: e for e in _events(live_server, "user.imported")}
    assert set(events) == {carol.id, dave.id}
    assert events[carol.id].actor == "cli" and events[carol.id].details["password"] == "bcrypt"
    assert events[carol.id].details["factors"] == {"totp": 1} and events[carol.id].details["source"] == "jsonl"
    assert events[dave.id].details["password"] is None
    assert _events(live_server, "factor.totp.imported") == []  # (no "new sign-in method" mail on migration day)

    # The policy counts carol's imported TOTP: active (voluntary), already set up were 2FA required for
    # everyone; dave, disabled, is counted apart (seeded: alice and an admin, without 2FA).
    shown = idp("policy", "show", "--org", "Acme", "--json", database_url=live_server.database_url)
    assert shown.returncode == 0, shown.stderr
    policy = json.loads(shown.stdout)
    assert policy["distribution"]["active_voluntary"] == 1 and policy["disabled_not_counted"] == 1
    assert policy["impact_of_requiring_all"]["already_set_up"] == 1

    rp = rp_factory(seeded.first_party)
    browser = _sign_in(live_server, rp, "carol@acme.test", PASSWORD)
    browser.submit(browser.page.form_with("code"), {"code": pyotp.TOTP(TOTP_SECRET).now()})
    assert len(past_new_recovery_codes(browser)) == 10
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]


def _keycloak_password(algorithm: str, iterations: int, key_bits: int, salt: bytes, password: str) -> dict:
    """A password credential as Keycloak's Pbkdf2PasswordHashProvider stores it: PBKDF2 of the
    password's UTF-8 (Java's PBEKeySpec over SunJCE) with the provider's digest, `key_bits` long,
    value and salt in standard base64, the JSON documents inside strings."""
    digest = {"pbkdf2": "sha1", "pbkdf2-sha256": "sha256", "pbkdf2-sha512": "sha512"}[algorithm]
    value = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations, dklen=key_bits // 8)
    return {"type": "password", "createdDate": 1700000000000,
            "secretData": json.dumps({"value": _b64(value), "salt": _b64(salt), "additionalParameters": {}}),
            "credentialData": json.dumps({"hashIterations": iterations, "algorithm": algorithm,
                                          "additionalParameters": {}})}


def _keycloak_otp(value: str, sub_type: str = "totp", **data) -> dict:
    return {"type": "otp", "userLabel": "My phone", "secretData": json.dumps({"value": value}),
            "credentialData": json.dumps({"subType": sub_type, "digits": 6, "counter": 0, "period": 30,
                                          "algorithm": "HmacSHA1", **data})}


def test_a_keycloak_export_signs_in_with_password_then_totp(live_server, seeded, rp_factory, idp, tmp_path):
    otp_value = "nO3vXCyY2wBKmE5tRhQp"  # Keycloak keeps the secret as text; the HMAC key is its UTF-8
    argon2_salt = b"keycloak-argon2-salt"
    argon2_value = low_level.hash_secret_raw(PASSWORD.encode(), argon2_salt, time_cost=3, memory_cost=1024,
                                             parallelism=1, hash_len=32, type=low_level.Type.ID)
    export = {"realm": "acme", "users": [
        {"username": "erin", "email": "erin@acme.test", "emailVerified": True, "firstName": "Erin",
         "lastName": "Example", "enabled": True,
         "credentials": [_keycloak_password("pbkdf2-sha256", 27500, 256, b"sixteen byte salt"[:16], PASSWORD),
                         _keycloak_otp(otp_value)]},
        {"username": "frank@acme.test", "enabled": False,
         "credentials": [_keycloak_password("pbkdf2-sha512", 3000, 512, b"another salt 16b", PASSWORD),
                         _keycloak_otp("hotpsecret0123456789", sub_type="hotp"),
                         {"type": "webauthn", "secretData": "{}", "credentialData": "{}"}]},
        {"username": "grace", "email": "grace@acme.test", "enabled": True,
         "credentials": [{"type": "password",
                          "secretData": json.dumps({"value": _b64(argon2_value), "salt": _b64(argon2_salt)}),
                          "credentialData": json.dumps({"hashIterations": 3, "algorithm": "argon2",
                                                        "additionalParameters": {
                                                            "hashLength": ["32"], "memory": ["1024"], "type": ["id"],
                                                            "version": ["1.3"], "parallelism": ["1"]}})},
                         _keycloak_otp(pyotp.random_base32(), secretEncoding="BASE32")]},
        {"username": "service-account-app", "serviceAccountClientId": "app", "enabled": True},
    ]}
    dry = _import(idp, live_server, tmp_path, export, "--dry-run", file_format="keycloak")
    assert dry.returncode == 0, dry.stderr
    assert "would import 3 user(s)" in dry.stdout and _user(live_server, "erin@acme.test") is None
    result = _import(idp, live_server, tmp_path, export, file_format="keycloak")
    assert result.returncode == 0, result.stderr
    assert "users[1] (frank@acme.test): hotp credential left behind" in result.stderr
    assert "users[1] (frank@acme.test): 'webauthn' credential left behind" in result.stderr
    assert "users[3] (service-account-app): skipped" in result.stderr
    erin, frank = _user(live_server, "erin@acme.test"), _user(live_server, "frank@acme.test")
    assert (erin.name, erin.email_verified, erin.disabled, erin.second_factor_count) == ("Erin Example", True, False, 1)
    assert (frank.disabled, frank.email_verified, frank.second_factor_count) == (True, False, 0)
    assert erin.password_hash.startswith("$pbkdf2-sha256$i=27500$")
    assert _user(live_server, "grace@acme.test").password_hash.startswith("$argon2id$v=19$m=1024,t=3,p=1$")
    [frank_event] = [e for e in _events(live_server, "user.imported") if e.subject_id == frank.id]
    assert frank_event.details["source"] == "keycloak" and len(frank_event.details["left_behind"]) == 2

    rp = rp_factory(seeded.first_party)
    browser = _sign_in(live_server, rp, "erin@acme.test", PASSWORD)
    code = pyotp.TOTP(base64.b32encode(otp_value.encode("utf-8")).decode()).now()
    browser.submit(browser.page.form_with("code"), {"code": code})
    past_new_recovery_codes(browser)
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["sub"] == erin.public_id
    assert _user(live_server, "erin@acme.test").password_hash.startswith("$argon2id$")

    grace = _sign_in(live_server, rp, "grace@acme.test", PASSWORD)
    assert grace.page.form_with("code")  # her password (Keycloak's argon2) was right: the code page
    assert _user(live_server, "grace@acme.test").password_hash.startswith(
        f"$argon2id$v=19$m={FAST_ARGON2['security.argon2_memory_cost']},")


# --------------------------------------------------------------------------- bad files, dry run

def test_a_bad_file_names_every_bad_line_and_imports_nothing(live_server, seeded, idp, tmp_path):
    from idp.models import AuditEvent, Credential, User

    before = (_count(live_server, User), _count(live_server, Credential), _count(live_server, AuditEvent))
    lines = [
        {"email": "ok@acme.test", "password_hash": HASHES["bcrypt-2b"]()},
        '{"email": "broken@acme.test",',                                           # 2: not JSON
        {"name": "No Address"},                                                    # 3: no e-mail
        {"email": "twice@acme.test"},
        {"email": "TWICE@acme.test"},                                              # 5: duplicate in the file
        {"email": seeded.user_email},                                              # 6: in the database already
        {"email": "odd@acme.test", "password_hash": "{CRYPT}$1$abc$def"},          # 7: unknown format
        {"email": "md5@acme.test", "password_hash": hashlib.md5(b"pw").hexdigest()},  # 8: unsalted
        {"email": "totp@acme.test", "totp": [{"secret": "not base32!"}]},          # 9: bad TOTP secret
        {"email": "slow@acme.test", "password_hash": "pbkdf2_sha256$900000000$salt$" + _b64(b"x" * 32)},  # 10
        {"email": "role@acme.test", "role": "root"},                               # 11
        {"email": "extra@acme.test", "shoe_size": 44},                             # 12
        "null",                                                                    # 13: no user
        {"email": "none@acme.test", "totp": None, "password_hash": None},          # 14: fine (none of either)
    ]
    result = _import(idp, live_server, tmp_path, lines)
    assert result.returncode != 0
    err = result.stderr.splitlines()
    expected = {2: "not JSON", 3: "email is missing", 5: "duplicate e-mail twice@acme.test (also at line 4)",
                6: "already exists", 7: "unknown password hash format", 8: "unsalted MD5 hex digest",
                9: "totp[0]: the secret is not valid base32", 10: "PBKDF2 iterations 900000000 out of range",
                11: "role must be one of", 12: "unknown field 'shoe_size'", 13: "not a JSON object"}
    for number, reason in expected.items():
        assert any(f": line {number}: " in line and reason in line for line in err), (number, result.stderr)
    assert not any(f": line {n}: " in line for n in (1, 4, 14) for line in err)
    assert err[-1] == f"idp: error: {len(expected)} problem(s) in {tmp_path / 'users.jsonl'}: nothing imported"
    assert (_count(live_server, User), _count(live_server, Credential), _count(live_server, AuditEvent)) == before


def test_dry_run_writes_nothing(live_server, seeded, idp, tmp_path):
    from idp.models import AuditEvent, Credential, User

    before = (_count(live_server, User), _count(live_server, Credential), _count(live_server, AuditEvent))
    result = _import(idp, live_server, tmp_path, [
        {"email": "one@acme.test", "password_hash": HASHES["django-pbkdf2_sha256"](), "totp": [{"secret": TOTP_SECRET}]},
        {"email": "two@acme.test", "role": "admin"}], "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "line 1: one@acme.test  user  password pbkdf2_sha256  totp x1",
        "line 2: two@acme.test  admin  no password (reset link)",
        "would import 2 user(s) into 'Acme' (--dry-run: nothing written)"]
    assert (_count(live_server, User), _count(live_server, Credential), _count(live_server, AuditEvent)) == before


def test_the_same_secret_twice_for_one_user_imports_nothing(live_server, seeded, idp, tmp_path):
    """Caught as the factor stores it (TotpFactor.import_credential), after every check: still nothing."""
    from idp.models import User

    result = _import(idp, live_server, tmp_path, [
        {"email": "one@acme.test"},
        {"email": "two@acme.test", "totp": [{"secret": TOTP_SECRET}, {"secret": TOTP_SECRET.lower()}]}])
    assert result.returncode != 0 and "line 2: totp[1]: two@acme.test already has this secret" in result.stderr
    assert _count(live_server, User, User.email.in_(["one@acme.test", "two@acme.test"])) == 0


def test_stdin_and_an_unknown_organization(live_server, seeded, idp):
    line = json.dumps({"email": "piped@acme.test", "password_hash": HASHES["bcrypt-2b"]()})
    result = idp("user", "import", "--org", "Acme", "-", input=line + "\n", database_url=live_server.database_url)
    assert result.returncode == 0, result.stderr
    assert _user(live_server, "piped@acme.test") is not None
    # An address of another organization's user is taken too: nothing is overwritten, nor moved.
    assert idp("org", "add", "Other", database_url=live_server.database_url).returncode == 0
    elsewhere = idp("user", "import", "--org", "Other", "-", input=line + "\n", database_url=live_server.database_url)
    assert elsewhere.returncode != 0 and "-: line 1: a user with the e-mail address piped@acme.test already exists" \
        in elsewhere.stderr
    missing = idp("user", "import", "--org", "Nope", "-", input=line, database_url=live_server.database_url)
    assert missing.returncode != 0 and missing.stderr.strip().endswith("unknown organization 'Nope'")


def test_a_bad_keycloak_export_imports_nothing(live_server, seeded, idp, tmp_path):
    from idp.models import User

    before = _count(live_server, User)
    path = tmp_path / "export.json"
    path.write_text('{"users": [')
    broken = idp("user", "import", "--org", "Acme", "--format", "keycloak", str(path),
                 database_url=live_server.database_url)
    assert broken.returncode != 0 and f"{path}: file: not JSON" in broken.stderr
    not_export = _import(idp, live_server, tmp_path, [{"email": "x@acme.test"}], file_format="keycloak")
    assert not_export.returncode != 0 and 'no "users" list' in not_export.stderr
    result = _import(idp, live_server, tmp_path, {"users": [
        {"username": "ok", "email": "ok@acme.test", "enabled": True},
        {"username": "nomail", "enabled": True},
        {"username": "md5", "email": "md5@acme.test", "credentials": [
            {"type": "password", "secretData": json.dumps({"value": _b64(b"x" * 32), "salt": _b64(b"y" * 16)}),
             "credentialData": json.dumps({"hashIterations": 1, "algorithm": "md5"})}]},
        {"username": "slow", "email": "slow@acme.test", "credentials": [
            {"type": "otp", "secretData": json.dumps({"value": "abcdefghijabcdefghij"}),
             "credentialData": json.dumps({"subType": "totp", "digits": 6, "period": 60, "algorithm": "HmacSHA1"})}]},
    ]}, file_format="keycloak")
    assert result.returncode != 0, result.stdout
    assert "users[1] (nomail): no e-mail address" in result.stderr
    assert "users[2] (md5): password: unsupported Keycloak password algorithm 'md5'" in result.stderr
    assert "users[3] (slow): totp[0]: TOTP period must be 30 seconds" in result.stderr
    assert result.stderr.strip().endswith("3 problem(s) in " + str(tmp_path / "export.json") + ": nothing imported")
    assert _count(live_server, User) == before


def test_thousands_of_users_in_one_transaction(idp, db, url, tmp_path):
    """7,500 users: their events are more than one INSERT may carry on PostgreSQL (65,535
    parameters, nine per event); the import still writes them all, with one event each."""
    from idp.models import AuditEvent, User

    assert idp("org", "add", "Acme", database_url=url).returncode == 0
    hashed = HASHES["bcrypt-2b"]()
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"email": f"user{i}@acme.test", "password_hash": hashed}) + "\n"
                            for i in range(7500)))
    result = idp("user", "import", "--org", "Acme", str(path), database_url=url, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "imported 7500 user(s)" in result.stdout
    counts = db.counts()
    assert counts["users"] == 7500 and len(db.rows(AuditEvent, AuditEvent.event == "user.imported")) == 7500
    assert len(db.rows(User, User.password_hash == hashed)) == 7500


def test_json_a_parser_refuses_otherwise_is_a_bad_line_not_a_traceback(live_server, seeded, idp, tmp_path):
    """A number past Python's 4,300 digits and nesting past the recursion limit are refused by the
    JSON reader with errors other than JSONDecodeError (a ValueError without `msg`, a
    RecursionError): each is still that line's one-line problem, for JSON Lines and a Keycloak
    export alike, and nothing is imported."""
    from idp.models import User

    before = _count(live_server, User)
    result = _import(idp, live_server, tmp_path, [
        {"email": "ok@acme.test"},
        '{"email": "big@acme.test", "n": ' + "1" * 5000 + "}",
        "[" * 100_000])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    err = result.stderr.splitlines()
    assert any(": line 2: not JSON" in line for line in err), result.stderr
    assert any(": line 3: not JSON" in line for line in err), result.stderr
    assert err[-1].endswith("2 problem(s) in " + str(tmp_path / "users.jsonl") + ": nothing imported")
    path = tmp_path / "deep.json"
    for text in ('{"users": ' + "[" * 100_000, '{"users": [{"email": "big@acme.test", "n": ' + "1" * 5000 + "}]}"):
        path.write_text(text)
        refused = idp("user", "import", "--org", "Acme", "--format", "keycloak", str(path),
                      database_url=live_server.database_url)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert f"{path}: file: not JSON" in refused.stderr
    assert _count(live_server, User) == before


def test_a_keycloak_credential_of_the_wrong_shape_is_a_bad_user_not_a_traceback(live_server, seeded, idp, tmp_path):
    """`additionalParameters` not an object, a `memory` that is not a number: the user's problem,
    one line, nothing imported."""
    from idp.models import User

    def argon2(parameters) -> dict:
        return {"type": "password", "secretData": json.dumps({"value": _b64(b"x" * 32), "salt": _b64(b"y" * 16)}),
                "credentialData": json.dumps({"hashIterations": 3, "algorithm": "argon2",
                                              "additionalParameters": parameters})}

    before = _count(live_server, User)
    result = _import(idp, live_server, tmp_path, {"users": [
        {"username": "list", "email": "list@acme.test", "credentials": [argon2(["memory", "7168"])]},
        {"username": "dict", "email": "dict@acme.test", "credentials": [argon2({"memory": [{"kib": 7168}]})]},
        {"username": "ok", "email": "ok@acme.test"},
    ]}, file_format="keycloak")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "users[0] (list): password:" in result.stderr
    assert "users[1] (dict): password:" in result.stderr
    assert result.stderr.strip().endswith("2 problem(s) in " + str(tmp_path / "export.json") + ": nothing imported")
    assert _count(live_server, User) == before


def test_a_keycloak_otp_algorithm_that_is_not_text_is_a_bad_user_not_a_traceback(live_server, seeded, idp, tmp_path):
    from idp.models import User

    before = _count(live_server, User)
    result = _import(idp, live_server, tmp_path, {"users": [
        {"username": "odd", "email": "odd@acme.test", "credentials": [
            {"type": "otp", "secretData": json.dumps({"value": "abcdefghijabcdefghij"}),
             "credentialData": json.dumps({"subType": "totp", "digits": 6, "period": 30, "algorithm": ["HmacSHA1"]})}]},
    ]}, file_format="keycloak")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "users[0] (odd): totp[0]: TOTP algorithm must be one of" in result.stderr
    assert _count(live_server, User) == before


def test_users_left_without_a_way_to_set_a_password_are_told_of(live_server, seeded, idp, tmp_path):
    """"Forgot your password?" mails no link to an unverified address (password_reset.refused,
    `email_unverified`), nor to anyone when the links are off: a user imported without a password
    and in that case has no way in until an admin sets one. The import says so (a warning per
    user, and the summary), rather than promise the reset link; and imports them still."""
    lines = [{"email": "unverified@acme.test", "email_verified": False},
             {"email": "verified@acme.test"},
             {"email": "hashed@acme.test", "email_verified": False, "password_hash": HASHES["bcrypt-2b"]()}]
    dry = _import(idp, live_server, tmp_path, lines, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    warning = ("idp: warning: line 1: unverified@acme.test: no password, and \"Forgot your password?\" mails no link "
               "to an unverified address: invite them with idp user invite, or set one with idp user set-password")
    assert dry.stderr.splitlines() == [warning]
    result = _import(idp, live_server, tmp_path, lines)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [warning]
    assert ("2 without one (they set one by \"Forgot your password?\", but for 1 whose address is not verified: "
            "idp user invite --all-without-password, or idp user set-password)") in result.stdout
    assert _user(live_server, "unverified@acme.test") is not None

    off = idp("user", "import", "--org", "Acme", "-", input=json.dumps({"email": "later@acme.test"}) + "\n",
              database_url=live_server.database_url, env={"IDP_PASSWORD_RESET__ENABLED": "false"})
    assert off.returncode == 0, off.stderr
    assert off.stderr.splitlines() == [
        "idp: warning: line 1: later@acme.test: no password, and password reset links are off "
        "([password_reset] enabled): set one with idp user set-password"]
    assert "1 without one (password reset links are off: idp user set-password)" in off.stdout


def test_a_keycloak_temporary_password_is_left_behind(live_server, seeded, rp_factory, idp, tmp_path):
    """A password an admin set in Keycloak as temporary (the user's required action UPDATE_PASSWORD:
    Keycloak would make them change it at their next login) is known to that admin, maybe mailed
    in clear: imported, it would sign in here for good, never changed. It is left behind, said so,
    and the user sets one by the reset link; a user's other required actions are said to be dropped."""
    export = {"users": [
        {"username": "temp", "email": "temp@acme.test", "emailVerified": True, "enabled": True,
         "requiredActions": ["UPDATE_PASSWORD", "CONFIGURE_TOTP"],
         "credentials": [_keycloak_password("pbkdf2-sha256", 27500, 256, b"sixteen byte salt"[:16], PASSWORD)]},
        {"username": "kept", "email": "kept@acme.test", "emailVerified": True, "enabled": True,
         "credentials": [_keycloak_password("pbkdf2-sha256", 27500, 256, b"sixteen byte salt"[:16], PASSWORD)]},
        {"username": "flagged", "email": "flagged@acme.test", "emailVerified": True, "enabled": True,  # (a realm file's)
         "credentials": [{**_keycloak_password("pbkdf2-sha256", 27500, 256, b"sixteen byte salt"[:16], PASSWORD),
                          "temporary": True}]},
    ]}
    result = _import(idp, live_server, tmp_path, export, file_format="keycloak")
    assert result.returncode == 0, result.stderr
    assert "users[0] (temp): a temporary password (Keycloak's required action UPDATE_PASSWORD) left behind" \
        in result.stderr
    assert "users[0] (temp): required action CONFIGURE_TOTP not carried over" in result.stderr
    assert _user(live_server, "temp@acme.test").password_hash is None
    assert "users[2] (flagged): a temporary password (Keycloak's required action UPDATE_PASSWORD) left behind" \
        in result.stderr
    assert _user(live_server, "flagged@acme.test").password_hash is None
    assert _user(live_server, "kept@acme.test").password_hash.startswith("$pbkdf2-sha256$")
    browser = _sign_in(live_server, rp_factory(seeded.first_party), "temp@acme.test", PASSWORD)
    assert browser.page.status == 401


def test_keycloak_strings_reach_neither_a_refusal_nor_the_terminal_as_they_are(live_server, seeded, idp, tmp_path):
    """Keycloak allows a credential's userLabel 255 characters, this provider's labels 200: a longer
    label is cut (and said so), not the user refused. Neither a userLabel nor a subType, strings
    of the export's, reaches the operator's terminal with its control characters (an escape
    sequence would redraw the warnings around it)."""
    from idp.models import Credential

    long_label = "L" * 255
    export = {"users": [
        {"username": "long", "email": "long@acme.test", "emailVerified": True, "enabled": True,
         "credentials": [{**_keycloak_otp(pyotp.random_base32(), secretEncoding="BASE32"), "userLabel": long_label}]},
        {"username": "bell", "email": "bell@acme.test", "emailVerified": True, "enabled": True,
         "credentials": [{**_keycloak_otp(pyotp.random_base32(), secretEncoding="BASE32"),
                          "userLabel": "\x1b[31mPhone\x07"}]},
        {"username": "odd", "email": "odd@acme.test", "emailVerified": True, "enabled": True,
         "credentials": [_keycloak_otp("hotpsecret0123456789", sub_type="hotp\x1b]0;owned\x07\x1b[2J")]},
    ]}
    result = _import(idp, live_server, tmp_path, export, file_format="keycloak")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr, repr(result.stderr)
    assert "users[0] (long): the otp credential's userLabel cut to 200 characters" in result.stderr
    assert "users[2] (odd): 'hotp\\x1b]0;owned\\x07\\x1b[2J' credential left behind" in result.stderr
    labels = {email: _count(live_server, Credential, Credential.user_id == _user(live_server, email).id,
                            Credential.factor == "totp") for email in ("long@acme.test", "bell@acme.test")}
    assert labels == {"long@acme.test": 1, "bell@acme.test": 1}
    from idp.db import db

    with live_server.context():
        stored = dict(db.session.execute(select(Credential.user_id, Credential.label).where(
            Credential.factor == "totp", Credential.user_id.in_(
                [_user(live_server, e).id for e in ("long@acme.test", "bell@acme.test")]))).all())
    assert stored[_user(live_server, "long@acme.test").id] == "L" * 200
    assert stored[_user(live_server, "bell@acme.test").id] == "[31mPhone"


def test_a_label_with_a_no_break_space_is_no_control_character(live_server, seeded, idp, tmp_path):
    """A no-break space (a French keyboard's, before ":"), an ideographic space: printable text
    to people, though not to str.isprintable. A label holding one is kept as it is, in a JSONL
    line as from a Keycloak export, not the user refused "for control characters"."""
    from idp.db import db
    from idp.models import Credential

    lines = [{"email": "nbsp@acme.test", "totp": [{"secret": pyotp.random_base32(), "label": "Pixel\u00a08"}]},
             {"email": "wide@acme.test", "totp": [{"secret": pyotp.random_base32(), "label": "電話\u3000一"}]}]
    result = _import(idp, live_server, tmp_path, lines)
    assert result.returncode == 0, result.stderr
    export = {"users": [{"username": "kc", "email": "kc@acme.test", "emailVerified": True, "enabled": True,
                         "credentials": [{**_keycloak_otp(pyotp.random_base32(), secretEncoding="BASE32"),
                                          "userLabel": "Téléphone\u00a0: Jean"}]}]}
    result = _import(idp, live_server, tmp_path, export, file_format="keycloak")
    assert result.returncode == 0, result.stderr
    with live_server.context():
        labels = set(db.session.scalars(select(Credential.label).where(Credential.factor == "totp")))
    assert {"Pixel\u00a08", "電話\u3000一", "Téléphone\u00a0: Jean"} <= labels
