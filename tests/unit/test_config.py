"""IDP_* variables are read as the type of the setting they override, and production refuses what
would leak: the development key, an http issuer, missing encryption keys, the console notifier."""
from __future__ import annotations

import pytest

from idp.config import ConfigError, load_settings

PRODUCTION = {"IDP_ENV": "production", "IDP_ISSUER": "https://idp.example", "IDP_SECRET_KEY": "s" * 40,
              "IDP_SECURITY__ENCRYPTION_KEYS": "k1:" + "A" * 43, "IDP_MAIL__HOST": "smtp.internal", "IDP_MAIL__STARTTLS": "true",
              "IDP_DATABASE_URL": "sqlite://"}


def settings(**environ):
    return load_settings(environ={"IDP_DATABASE_URL": "sqlite://", **environ})


@pytest.mark.parametrize("raw, expected", [("false", False), ("False", False), ("off", False), ("0", False),
                                           ("true", True), ("ON", True), ("1", True)])
def test_booleans_in_any_usual_spelling(raw, expected):
    assert settings(IDP_OPS__METRICS_ENABLED=raw).get("ops.metrics_enabled") is expected


def test_lists_from_one_item_commas_or_a_toml_array():
    assert settings(IDP_FACTORS__DISABLED="push").get("factors.disabled") == ("push",)
    assert settings(IDP_FACTORS__DISABLED="push, webauthn").get("factors.disabled") == ("push", "webauthn")
    assert settings(IDP_SERVER__TRUSTED_PROXIES='["10.0.0.1"]').trusted_proxies == ("10.0.0.1",)
    assert settings(IDP_SERVER__TRUSTED_PROXIES="10.0.0.1").trusted_proxies == ("10.0.0.1",)


def test_text_settings_keep_the_text():
    assert settings(IDP_MAIL__PASSWORD="123").get("mail.password") == "123"
    assert settings(IDP_MAIL__PASSWORD="true").get("mail.password") == "true"


@pytest.mark.parametrize("name, raw", [("IDP_SESSION__LIFETIME", "1h"), ("IDP_TOKENS__ACCESS_TOKEN_TTL", "abc"),
                                       ("IDP_TOKENS__ACCESS_TOKEN_TTL", "1.5"), ("IDP_OPS__METRICS_ENABLED", "maybe")])
def test_a_value_of_the_wrong_type_is_a_configuration_error(name, raw):
    with pytest.raises(ConfigError, match=name):
        settings(**{name: raw})


def test_production_starts_with_everything_set():
    assert load_settings(environ=PRODUCTION).production


def test_production_refuses_the_default_database_in_the_instance_folder(tmp_path):
    """Found in a production walkthrough: without IDP_CONFIG or IDP_DATABASE_URL, `idp init` made
    its SQLite file in the app's instance folder, for an installed package inside the virtualenv,
    which its reinstall deletes."""
    environ = {k: v for k, v in PRODUCTION.items() if k != "IDP_DATABASE_URL"}
    with pytest.raises(ConfigError, match=r"production demands a database named in server\.database_url"):
        load_settings(environ=environ, instance_path=tmp_path)
    assert load_settings(environ=environ, instance_path=tmp_path, overrides={"server.env": "development"}) \
        .database_url.endswith("idp.sqlite")
    assert load_settings(environ={**environ, "IDP_DATABASE_URL": f"sqlite:///{tmp_path}/idp.sqlite"}).production


@pytest.mark.parametrize("host", [None, "", " ", "Console", " console "])
def test_production_refuses_the_console_notifier(host):
    """It writes e-mailed one-time codes (recovery) to the log; an empty host selects it too."""
    environ = {k: v for k, v in PRODUCTION.items() if k != "IDP_MAIL__HOST"}
    if host is not None:
        environ["IDP_MAIL__HOST"] = host
    with pytest.raises(ConfigError, match="console notifier"):
        load_settings(environ=environ)


def test_a_key_written_the_wrong_way_round_is_not_repeated_in_the_error():
    material = "Q5egHpthM2DWt6-lLEIK_h0Wnc4xP3rSLiaJtMA51Zs"
    with pytest.raises(ConfigError) as raised:
        settings(IDP_SECURITY__ENCRYPTION_KEYS=f'["{material}:k1"]')
    assert material not in str(raised.value) and "number 1" in str(raised.value)


# ---------------------------------------------------------------- unusable values stop the start

GOOD_KEY = "k1:" + "A" * 43  # 32 zero bytes, base64url without padding


@pytest.mark.parametrize("environ, fragment", [
    ({"IDP_SECURITY__ENCRYPTION_KEYS": '["bad"]'}, "KEY_ID:BASE64URL"),
    ({"IDP_SECURITY__ENCRYPTION_KEYS": '["k2:AAAA"]'}, "32 bytes"),
    ({"IDP_SERVER__TRUSTED_PROXIES": "notanip"}, "not an IP address, CIDR range or \"unix\""),
    ({"IDP_OPS__METRICS_NETWORKS": "notanip"}, "not an IP address, CIDR range or \"unix\""),
    ({"IDP_REDIS_URL": "notaurl"}, "redis://"),
    ({"IDP_REDIS_URL": "redis://cache:notaport"}, "IDP_REDIS_URL"),
    ({"IDP_DATABASE_URL": "mysql://x/y"}, "postgresql+psycopg://"),
    ({"IDP_DATABASE_URL": "postgresql://x/y"}, "sqlite:///PATH"),
    ({"IDP_DATABASE_URL": "notaurl"}, "sqlite:///PATH"),
    ({"IDP_DATABASE_URL": "postgresql+psycopg://u:pw@h:abc/db"}, "not a valid URL"),
    ({"IDP_REDIS_URL": "redis://u:pw@[::1/0"}, "not a valid URL"),
    ({"IDP_SERVER__LOG_LEVEL": "LOUD"}, "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
])
def test_an_unusable_value_is_a_configuration_error_naming_the_setting(environ, fragment):
    with pytest.raises(ConfigError, match=next(iter(environ))) as raised:
        settings(**environ)
    assert fragment in str(raised.value)


def test_urls_and_keys_that_work_are_accepted():
    assert settings(IDP_DATABASE_URL="postgresql+psycopg://idp:pw@db/idp").database_url.startswith("postgresql")
    assert settings(IDP_REDIS_URL="rediss://cache:6380/1").redis_url == "rediss://cache:6380/1"
    assert settings(IDP_SECURITY__ENCRYPTION_KEYS=f'["{GOOD_KEY}"]').get("security.encryption_keys") == (GOOD_KEY,)
    assert settings(IDP_SERVER__LOG_LEVEL="debug").get("server.log_level") == "debug"


def test_a_url_with_a_password_is_never_echoed():
    with pytest.raises(ConfigError) as raised:
        settings(IDP_DATABASE_URL="mysql://idp:hunter2@db/idp")
    assert "hunter2" not in str(raised.value)


def test_the_checks_that_replace_value_errors_are_still_value_errors():
    """idp.ops.proxy and the key ring raised ValueError for these; callers catching it still do."""
    with pytest.raises(ValueError, match="not an IP address"):
        settings(IDP_SERVER__TRUSTED_PROXIES="proxy.example.com")


def test_a_short_production_secret_key_is_called_too_short():
    with pytest.raises(ConfigError, match="too short .* at least 32") as raised:
        load_settings(environ={**PRODUCTION, "IDP_SECRET_KEY": "short"})
    assert "development" not in str(raised.value)


def test_production_refuses_the_development_secret_key_by_that_name():
    with pytest.raises(ConfigError, match="development secret key"):
        load_settings(environ={k: v for k, v in PRODUCTION.items() if k != "IDP_SECRET_KEY"})


def test_an_empty_secret_key_is_refused_in_development_too():
    """Flask refuses a session without a key: every login would be a 500, not one line at start."""
    with pytest.raises(ConfigError, match=r"server.secret_key \(IDP_SECRET_KEY\) must not be empty"):
        settings(IDP_SECRET_KEY="")


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:5123/idp", "https://idp.example/realms/acme/"])
def test_an_issuer_with_a_path_is_refused(issuer):
    """Nothing would answer the addresses discovery published under the path."""
    with pytest.raises(ConfigError, match="without a path"):
        settings(IDP_ISSUER=issuer)


def test_an_issuer_whose_scheme_is_not_in_lower_case_is_refused():
    """"HTTPS://" passed production's https check, but the session cookie's Secure flag, its
    __Host- name and HSTS follow `issuer.startswith("https://")`: production served without them."""
    with pytest.raises(ConfigError, match="in lower case"):
        load_settings(environ={**PRODUCTION, "IDP_ISSUER": "HTTPS://idp.example"})
    with pytest.raises(ConfigError, match="in lower case"):
        settings(IDP_ISSUER="Http://127.0.0.1:5000")


@pytest.mark.parametrize("sender", ["Identity Provider", "idp@", "a@b.example, c@d.example", "a@b.example\nBcc: c@d.example"])
def test_a_sender_that_is_not_one_address_is_refused(sender):
    """Every mail would fail at the relay (reset links dead, recovery codes never sent), or, with a
    line break, before it: refused at start rather than found in the log."""
    with pytest.raises(ConfigError, match=r"mail.sender \(IDP_MAIL__SENDER\) must be one e-mail address"):
        load_settings(environ={**PRODUCTION, "IDP_MAIL__SENDER": sender})


@pytest.mark.parametrize("sender", ["idp@example.com", "Identity <idp@example.com>", '"Acme, Inc." <idp@acme.test>', ""])
def test_a_sender_may_have_a_name(sender):
    assert load_settings(environ={**PRODUCTION, "IDP_MAIL__SENDER": sender}).get("mail.sender") == sender


# ---------------------------------------------------------------- the IDP_CONFIG file is checked too

def with_file(tmp_path, text, **environ):
    path = tmp_path / "idp.toml"
    path.write_text(text)
    return settings(IDP_CONFIG=str(path), **environ)


@pytest.mark.parametrize("text, fragment", [
    ('[tokens]\naccess_token_ttl = "ten"', "tokens.access_token_ttl"),
    ("[tokens]\naccess_token_ttl = 1.5", "whole number"),
    ("[ops]\nmetrics_enabled = 1", "true or false"),
    ("[server]\ntrusted_proxies = \"10.0.0.1\"", "must be a list"),
    ("[mail]\nport = \"25\"", "mail.port"),
    ("[mail]\nhost = 25", "must be text"),
    ("tokens = 5", "section"),
    ("[tokens.access_token_ttl]\nx = 1", "tokens.access_token_ttl"),
])
def test_a_file_value_of_the_wrong_type_is_a_configuration_error(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match="IDP_CONFIG=") as raised:
        with_file(tmp_path, text)
    assert fragment in str(raised.value)


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path):
    with pytest.raises(ConfigError, match="mail.password") as raised:
        with_file(tmp_path, "[mail]\npassword = 12345678")
    assert "12345678" not in str(raised.value)


def test_file_values_of_the_right_type_keep_working(tmp_path):
    loaded = with_file(tmp_path, "\n".join([
        "[tokens]", "access_token_ttl = 600",
        "[server]", 'trusted_proxies = ["10.0.0.1", "fd00::/8"]',
        "[factors]", 'disabled = ["webauthn"]',
        "[factors.push]", "digits = 4",
        "[factors.someone_elses]", 'anything = "goes"', "nested = { deep = [1, 2] }",
    ]))
    assert loaded.get("tokens.access_token_ttl") == 600
    assert loaded.trusted_proxies == ("10.0.0.1", "fd00::/8")
    assert loaded.get("factors.disabled") == ("webauthn",)
    assert loaded.get("factors.push.digits") == 4
    assert loaded.get("factors.someone_elses.anything") == "goes"


def test_a_whole_number_is_fine_where_a_number_with_a_fraction_is_expected():
    from idp.config import _type_problem

    assert _type_problem(5, 2.5) is None
    assert _type_problem(True, 2.5) is not None
    assert _type_problem(2.5, 5) is not None
    assert _type_problem("anything", None) is None


def test_an_environment_variable_is_read_as_the_type_the_file_gave_a_plugin_setting(tmp_path):
    loaded = with_file(tmp_path, '[factors.someone_elses]\ncode = "007"', IDP_FACTORS__SOMEONE_ELSES__CODE="008")
    assert loaded.get("factors.someone_elses.code") == "008"


# ---------------------------------------------------------------- unknown keys

@pytest.mark.parametrize("name, message", [
    ("IDP_TOKENS__BOGUS", "unknown setting tokens.bogus (from IDP_TOKENS__BOGUS)"),
    ("IDP_BOGUS__X", "unknown setting bogus.x (from IDP_BOGUS__X)"),
    ("IDP_FACTORS__DISABLD", "did you mean factors.disabled?"),
    ("IDP_FACTORS__PUSH__DIGTS", "unknown setting factors.push.digts"),
    ("IDP_TOKENS__ACCESS_TOKEN_TTL__X", "unknown setting tokens.access_token_ttl.x"),
])
def test_an_unknown_variable_is_refused(name, message):
    with pytest.raises(ConfigError) as raised:
        settings(**{name: "1"})
    assert message in str(raised.value)


def test_an_unknown_file_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown setting tokens\.acess_token_ttl \(in IDP_CONFIG=.*did you mean"):
        with_file(tmp_path, "[tokens]\nacess_token_ttl = 5")
    with pytest.raises(ConfigError, match="unknown setting bogus"):
        with_file(tmp_path, "[bogus]")


def test_a_third_party_factors_settings_are_left_to_it():
    """A plugin's defaults live in its own code and it may be registered without an entry point
    (FactorRegistry.register), so the keys of an undocumented factors.NAME cannot be checked here."""
    loaded = settings(IDP_FACTORS__SMS__SENDER="idp@sms.example", IDP_FACTORS__SMS__RETRIES="3")
    assert loaded.section("factors.sms") == {"sender": "idp@sms.example", "retries": 3}


def as_variable(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_every_documented_setting_can_be_set_by_its_variable():
    """Everything config/default.toml documents (read elsewhere with `.get(key, default)` or not)."""
    import tomllib

    from idp.config import DEFAULT_FILE, _leaf_names, _variable_for

    defaults = tomllib.loads(DEFAULT_FILE.read_text())
    environ = {}
    for dotted in _leaf_names(defaults):
        value = defaults
        for part in dotted.split("."):
            value = value[part]
        if dotted != "server.database_url":  # empty: the instance folder's SQLite file
            environ[_variable_for(dotted)] = as_variable(value)
    loaded = settings(**environ)
    assert loaded.get("tokens.access_token_ttl") == defaults["tokens"]["access_token_ttl"]


@pytest.mark.parametrize("name", ["IDP_TEST_DATABASE_URL", "IDP_TEST_REDIS_URL", "IDP_BENCH_DATABASE_URL",
                                  "IDP_BENCH_PUSH_DATABASE_URL", "IDP_AUTHENTICATOR_PASSPHRASE", "IDP_HOST",
                                  "IDP_PORT", "IDP_TEST_CHROMIUM", "IDP_TEST_ARTIFACTS"])
def test_variables_of_the_tests_bench_and_makefile_are_not_settings(name):
    assert settings(**{name: "anything"}).env == "development"


def test_the_bench_limits_are_accepted():
    bench = {"IDP_RATELIMIT__LOGIN_POSTS_PER_IP": "1000000 per 1 minute",
             "IDP_RATELIMIT__PASSWORD_FAILURES_BEFORE_LOCKOUT": "1000000000",
             "IDP_RATELIMIT__PASSWORD_IP_FAILURES_BEFORE_LOCKOUT": "1000000000",
             "IDP_RATELIMIT__FACTOR_FAILURES_BEFORE_LOCKOUT": "1000000000",
             "IDP_RATELIMIT__FACTOR_IP_FAILURES_BEFORE_LOCKOUT": "1000000000",
             "IDP_FACTORS__PUSH__MAX_CHALLENGES": "1000000", "IDP_FACTORS__PUSH__CHALLENGE_TTL": "300",
             "IDP_SERVER__JSON_LOGS": "false", "IDP_SECURITY__ARGON2_MEMORY_COST": "1024",
             "IDP_SECURITY__ARGON2_TIME_COST": "1", "IDP_ISSUER": "http://127.0.0.1:5000",
             "IDP_SECRET_KEY": "x" * 48, "IDP_ENV": "development", "IDP_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert settings(**bench).get("factors.push.max_challenges") == 1000000


# ---------------------------------------------------------------- numbers in range (idp.config_ranges)

@pytest.mark.parametrize("name, raw, fragment", [
    ("IDP_TOKENS__ACCESS_TOKEN_TTL", "-5", "between 60 and 604800, not -5"),   # tokens born expired
    ("IDP_TOKENS__ID_TOKEN_TTL", "0", "between 60 and"),
    ("IDP_TOKENS__AUTHORIZATION_CODE_TTL", "600", "between 1 and 60,"),        # the grant capped it silently
    ("IDP_TOKENS__REFRESH_TOKEN_TTL", "-1", "between 60 and"),
    ("IDP_SESSION__LIFETIME", "-1", "between 60 and 31536000"),
    ("IDP_LOGIN__TRANSACTION_TTL", "0", "between 60 and"),                   # every login expired at once
    ("IDP_LOGIN__RECENT_LOGIN", "0", "between 10 and"),
    ("IDP_ADMIN__PAGE_SIZE", "0", "between 1 and 1000"),
    ("IDP_SERVER__DATABASE_POOL_SIZE", "0", "between 1 and 1000"),            # no connection at all
    ("IDP_SERVER__DATABASE_MAX_OVERFLOW", "-1", "between 0 and 1000"),
    ("IDP_SERVER__DATABASE_POOL_TIMEOUT", "0", "between 1 and 600"),
    ("IDP_MAIL__PORT", "70000", "between 1 and 65535"),
    ("IDP_SECURITY__ARGON2_TIME_COST", "0", "between 1 and 100"),             # argon2 raised deep in create_app
    ("IDP_SECURITY__ARGON2_PARALLELISM", "0", "between 1 and 64"),
    ("IDP_RATELIMIT__PASSWORD_FAILURES_BEFORE_LOCKOUT", "0", "at least 1, not 0"),   # every login locked
    # Past the counters' 32-bit column: a 500 at every guess (PostgreSQL's "integer out of range").
    ("IDP_RATELIMIT__FACTOR_FAILURES_BEFORE_LOCKOUT", "2147483648", "at most 1000000000"),
    ("IDP_RATELIMIT__FACTOR_IP_LOCKOUT_SECONDS", "0", "between 1 and 86400"),
    ("IDP_RATELIMIT__PASSWORD_LOCKOUT_MAX_SECONDS", "10", "must be at least ratelimit.password_lockout_seconds (30)"),
    ("IDP_RATELIMIT__LOGIN_POSTS_PER_IP", "lots", "a rate limit such as"),    # the limit was dropped
    ("IDP_RATELIMIT__LOGIN_POSTS_PER_IP", "", "a rate limit such as"),
    ("IDP_PASSWORD_RESET__PER_IP", "often", "a rate limit such as"),       # each request may mail someone
    ("IDP_RATELIMIT__ADMIN_EXPORTS", "many", "a rate limit such as"),     # a 500 at the first download
    ("IDP_TOKENS__DEFAULT_ID_TOKEN_ALG", "HS256", "one of ES256, RS256"),
    ("IDP_TOKENS__DEFAULT_ID_TOKEN_ALG", "es256", "one of ES256, RS256"),     # JOSE names are case-sensitive
])
def test_a_number_out_of_range_is_a_configuration_error(name, raw, fragment):
    with pytest.raises(ConfigError, match=name) as raised:
        settings(**{name: raw})
    assert fragment in str(raised.value)


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError) as raised:
        settings(IDP_TOKENS__ACCESS_TOKEN_TTL="0", IDP_ADMIN__PAGE_SIZE="0")
    assert "IDP_TOKENS__ACCESS_TOKEN_TTL" in str(raised.value) and "IDP_ADMIN__PAGE_SIZE" in str(raised.value)


def test_argon2_memory_below_eight_kib_per_lane_is_refused():
    with pytest.raises(ConfigError, match="at least 8 KiB per lane"):
        settings(IDP_SECURITY__ARGON2_PARALLELISM="4", IDP_SECURITY__ARGON2_MEMORY_COST="16")


def test_the_edges_of_the_ranges_are_accepted():
    loaded = settings(IDP_TOKENS__AUTHORIZATION_CODE_TTL="60", IDP_TOKENS__KEY_PUBLISH_DELAY="0",
                      IDP_RATELIMIT__LOGIN_POSTS_PER_IP="1000000 per 1 minute;5 per second",
                      IDP_RATELIMIT__PASSWORD_FAILURES_BEFORE_LOCKOUT="1000000000")
    assert loaded.get("tokens.authorization_code_ttl") == 60


@pytest.mark.parametrize("memory, passes", [(1024, 1), (19456, 1), (7000, 6)])
def test_production_refuses_argon2_weaker_than_owasp(memory, passes):
    environ = dict(PRODUCTION, IDP_SECURITY__ARGON2_MEMORY_COST=str(memory), IDP_SECURITY__ARGON2_TIME_COST=str(passes))
    with pytest.raises(ConfigError, match="OWASP"):
        load_settings(environ=environ)


@pytest.mark.parametrize("memory, passes", [(19456, 2), (47104, 1), (12288, 3), (9216, 4), (7168, 5)])
def test_production_accepts_each_row_of_owasps_argon2_table(memory, passes):
    environ = dict(PRODUCTION, IDP_SECURITY__ARGON2_MEMORY_COST=str(memory), IDP_SECURITY__ARGON2_TIME_COST=str(passes))
    assert load_settings(environ=environ).production


def test_production_refuses_a_publish_delay_shorter_than_the_workers_caches():
    """A worker could sign with a key another still leaves out of its JWKS (key snapshot 10 s,
    cached document ops.cached_documents_ttl): relying parties would refuse the ID tokens."""
    with pytest.raises(ConfigError, match=r"key_publish_delay.*\(14\) must be at least .*cached_documents_ttl"):
        load_settings(environ=dict(PRODUCTION, IDP_TOKENS__KEY_PUBLISH_DELAY="14"))
    assert load_settings(environ=dict(PRODUCTION, IDP_TOKENS__KEY_PUBLISH_DELAY="15")).production
    assert settings(IDP_TOKENS__KEY_PUBLISH_DELAY="0")  # development: tests and demos rotate at once


def test_development_keeps_fast_argon2_for_tests_and_demos():
    assert settings(IDP_SECURITY__ARGON2_MEMORY_COST="1024", IDP_SECURITY__ARGON2_TIME_COST="1")


@pytest.mark.parametrize("host, starttls, refused", [
    ("smtp.internal", "false", True), ("smtp.internal", "true", False),
    ("localhost", "false", False), ("127.0.0.1", "false", False),     # a local MTA relays on
    (" LocalHost ", "false", False), ("::1", "false", False),
    ("localhost.example.net", "false", True), ("127.0.0.1.nip.io", "false", True),  # names, not the host itself
])
def test_production_refuses_mailing_codes_in_clear_to_a_remote_relay(host, starttls, refused):
    """E-mailed recovery codes (and the SMTP password) crossed the network in clear: starttls
    is off by default."""
    environ = dict(PRODUCTION, IDP_MAIL__HOST=host, IDP_MAIL__STARTTLS=starttls)
    if refused:
        with pytest.raises(ConfigError, match="IDP_MAIL__STARTTLS"):
            load_settings(environ=environ)
    else:
        assert load_settings(environ=environ).production


@pytest.mark.parametrize("trusted, refused", [
    (["0.0.0.0/0"], True), (["10.0.0.0/8", "::/0"], True), (["::0/0"], True),
    (["10.0.0.0/8", "fd00::/8", "unix"], False), (["0.0.0.0/1"], False),
    (["0.0.0.0/1", "128.0.0.0/1"], True), (["::/1", "8000::/1", "10.0.0.0/8"], True),
    (["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2"], False),
])
def test_production_refuses_trusting_every_address_as_a_proxy(trusted, refused):
    """Any client could then choose the address it is counted under with one X-Forwarded-For (every
    per-address rate limit and lockout escaped, the audit log's addresses its own): like mailing
    codes in clear, refused in production, where the proxies' own range is what to name."""
    environ = dict(PRODUCTION, IDP_SERVER__TRUSTED_PROXIES=",".join(trusted))
    if refused:
        with pytest.raises(ConfigError, match=r"server\.trusted_proxies.*every address"):
            load_settings(environ=environ)
    else:
        assert load_settings(environ=environ).production
    assert settings(IDP_SERVER__TRUSTED_PROXIES=",".join(trusted))  # development starts (with a warning)


def test_the_postgresql_pool_is_sized_by_the_settings():
    from idp.db import PoolSettings, make_engine

    pool = PoolSettings.from_settings(settings(IDP_SERVER__DATABASE_POOL_SIZE="3", IDP_SERVER__DATABASE_MAX_OVERFLOW="0",
                                               IDP_SERVER__DATABASE_POOL_TIMEOUT="7"))
    assert pool == PoolSettings(size=3, max_overflow=0, timeout=7)
    engine = make_engine("postgresql+psycopg://idp@127.0.0.1:1/none", pool)  # no connection is opened
    assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._timeout) == (3, 0, 7)
    assert PoolSettings.from_settings(settings()) == PoolSettings()  # config/default.toml's values are the defaults
