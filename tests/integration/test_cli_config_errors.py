"""A bad setting stops every `idp` command at once with one line on stderr, never a traceback
(CONTRACT.md, "The `idp` command"; README, "Configuration"), and help works without settings.

The commands run as real subprocesses with a clean environment (fixtures/cli.py). Nothing
here reaches a database: the settings are checked before one is opened.
"""
from __future__ import annotations

import pytest

from fixtures.cli import refused

PRODUCTION_WITHOUT_SECRET_KEY = {"IDP_ENV": "production"}



# ---------------------------------------------------------------- bad settings: one line

@pytest.mark.parametrize("env, fragments", [
    ({"IDP_SECURITY__ENCRYPTION_KEYS": '["bad"]'}, ("security.encryption_keys", "KEY_ID:BASE64URL")),
    ({"IDP_SECURITY__ENCRYPTION_KEYS": '["k2:AAAA"]'}, ("security.encryption_keys", "32 bytes")),
    ({"IDP_SERVER__TRUSTED_PROXIES": "notanip"}, ("server.trusted_proxies", "not an IP address, CIDR range or")),
    ({"IDP_OPS__METRICS_NETWORKS": "notanip"}, ("ops.metrics_networks", "not an IP address, CIDR range or")),
    ({"IDP_REDIS_URL": "notaurl"}, ("IDP_REDIS_URL", "redis://")),
    ({"IDP_FACTORS__PUSH__DIGITS": "9"}, ("factors.push.digits", "between 2 and 6")),
    ({"IDP_FACTORS__TOTP__DIGITS": "7"}, ("factors.totp.digits", "6 or 8")),  # was a 500 at the first enrolment
    ({"IDP_FACTORS__RECOVERY_CODES__COUNT": "0"}, ("factors.recovery_codes.count", "between 1 and 50")),  # was clamped
    ({"IDP_RATELIMIT__PASSWORD_LOCKOUT_SECONDS": "1000000000000"}, ("password_lockout_seconds", "between 1 and 86400")),
    ({"IDP_SESSION__COOKIE_NAME": "a;b=c"}, ("session.cookie_name", "'a;b=c'")),  # every login 'expired'
    # a prefixed cookie without Secure (an http issuer) is never kept: every login 'expired'
    ({"IDP_SESSION__COOKIE_NAME": "__Host-idp"}, ("session.cookie_name", "https issuer", "'__Host-idp'")),
    ({"IDP_FACTORS__TOTP__ALGORITHM": "MD5"}, ("factors.totp.algorithm", "'MD5'")),
    # a browser refuses every ceremony of an RP id foreign to the origin: said at start-up
    ({"IDP_FACTORS__WEBAUTHN__RP_ID": "other.example"}, ("factors.webauthn.rp_id", "'other.example'")),
    ({"IDP_ISSUER": "https://id.example.com", "IDP_FACTORS__WEBAUTHN__RP_ID": "com"}, ("factors.webauthn.rp_id", "'com'")),
    ({"IDP_FACTORS__WEBAUTHN__RP_ID": "0.1"}, ("factors.webauthn.rp_id", "127.0.0.1")),
    # an origin other than the issuer's, where the pages are: every key's answer refused, in silence
    ({"IDP_ISSUER": "https://id.example.com", "IDP_FACTORS__WEBAUTHN__ORIGIN": "https://login.example.com",
      "IDP_FACTORS__WEBAUTHN__RP_ID": "example.com"},
     ("factors.webauthn.origin", "'https://login.example.com'", "'https://id.example.com'")),
    ({"IDP_DATABASE_URL": "mysql://x/y"}, ("IDP_DATABASE_URL", "sqlite:///PATH", "postgresql+psycopg://")),
    ({"IDP_ENV": "production", "IDP_SECRET_KEY": "short"}, ("IDP_SECRET_KEY", "too short", "at least 32")),
    ({"IDP_TOKENS__BOGUS": "1"}, ("unknown setting tokens.bogus (from IDP_TOKENS__BOGUS)",)),
    ({"IDP_BOGUS__X": "1"}, ("unknown setting bogus.x (from IDP_BOGUS__X)",)),
    ({"IDP_SERVER__LOG_LEVEL": "LOUD"}, ("server.log_level", "LOUD")),
    ({"IDP_TOKENS__ACCESS_TOKEN_TTL": "-5"}, ("IDP_TOKENS__ACCESS_TOKEN_TTL", "between 60 and", "-5")),
    ({"IDP_RATELIMIT__LOGIN_POSTS_PER_IP": "lots"}, ("IDP_RATELIMIT__LOGIN_POSTS_PER_IP", "60 per minute", "'lots'")),
    ({"IDP_SECURITY__ARGON2_TIME_COST": "0"}, ("IDP_SECURITY__ARGON2_TIME_COST", "between 1 and 100")),
], ids=lambda value: "-".join(value) if isinstance(value, dict) else None)
def test_a_bad_setting_is_one_configuration_line(idp, sqlite_url, env, fragments):
    refused(idp("keys", "list", database_url=sqlite_url, env=env), "idp: error: configuration:", *fragments)


def test_a_wrong_type_in_the_config_file_is_one_line(idp, sqlite_url, tmp_path):
    config = tmp_path / "idp.toml"
    config.write_text('[tokens]\naccess_token_ttl = "ten"\n')
    refused(idp("keys", "list", database_url=sqlite_url, env={"IDP_CONFIG": str(config)}),
            "configuration", "tokens.access_token_ttl", "whole number", "'ten'")


def test_an_unknown_key_in_the_config_file_is_one_line(idp, sqlite_url, tmp_path):
    config = tmp_path / "idp.toml"
    config.write_text("[tokens]\nacess_token_ttl = 600\n")
    refused(idp("keys", "list", database_url=sqlite_url, env={"IDP_CONFIG": str(config)}),
            "configuration", "unknown setting tokens.acess_token_ttl", "did you mean tokens.access_token_ttl")


def test_a_plugin_command_with_bad_settings_is_one_line(idp, sqlite_url):
    refused(idp("factor", "push", "activate", "--user", "a@example.com", database_url=sqlite_url,
                env=PRODUCTION_WITHOUT_SECRET_KEY), "configuration", "secret key")


# ---------------------------------------------------------------- help needs no settings

@pytest.mark.parametrize("args", [
    ("policy", "--help"), ("policy", "show", "--help"), ("factor", "--help"), ("factor", "push", "--help"),
    ("factor", "push", "activate", "--help"), ("recovery-qr", "--help"), ("user", "add", "--help"),
    ("factor", "-h"),
], ids=" ".join)
def test_help_works_while_the_settings_are_bad(idp, sqlite_url, args):
    result = idp(*args, database_url=sqlite_url, env=PRODUCTION_WITHOUT_SECRET_KEY)
    assert result.returncode == 0, result
    assert result.stdout.startswith("Usage: idp"), result
    assert result.stderr == "", result


def test_factor_help_lists_the_plugin_commands(idp, sqlite_url):
    result = idp("factor", "--help", database_url=sqlite_url, env=PRODUCTION_WITHOUT_SECRET_KEY)
    for name in ("push", "totp"):
        assert f"\n  {name} " in result.stdout, result


@pytest.mark.parametrize("args", [(), ("org",), ("policy",)], ids=lambda args: " ".join(("idp", *args)))
def test_a_group_without_a_command_prints_its_help_as_click_does(idp, sqlite_url, args):
    result = idp(*args, database_url=sqlite_url, env=PRODUCTION_WITHOUT_SECRET_KEY)
    assert result.returncode == 2, result  # click's usage status for a group called without a command
    assert result.stderr_lines[0].startswith("Usage: idp"), result
    assert "Commands:" in result.stderr_lines, result
    assert "error" not in result.stderr, result


# ---------------------------------------------------------------- idp serve: one access log

def test_serve_writes_the_apps_access_lines_only(sqlite_only_url):
    """werkzeug's own request lines repeated the `idp.access` JSON lines, at INFO for /healthz
    too, with terminal colour codes inside the JSON message."""
    import json
    import time

    import requests

    from fixtures.cli import start_serving

    server, base = start_serving(sqlite_only_url)
    try:
        assert requests.get(f"{base}/jwks", timeout=2).status_code == 200
        time.sleep(0.3)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if "HTTP/1.1" in line["message"]]
    assert requests_logged == [], stderr
    access = [line for line in lines if line["logger"] == "idp.access"]
    assert [line["path"] for line in access] == ["/jwks"], stderr  # /healthz at DEBUG
    assert all("\x1b[" not in line["message"] for line in access), stderr
