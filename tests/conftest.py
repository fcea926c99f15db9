"""Fixtures shared by the whole suite, organised by theme.

Each theme lives in its own module under tests/fixtures/ and is loaded here, so
that several people can add fixtures without editing each other's code:

  fixtures.database   database_url / sqlite_url / postgres_url / migrated_database_url:
                      a clean database per test, SQLite always, PostgreSQL when
                      IDP_TEST_DATABASE_URL is set (a fresh schema per test)
  fixtures.cli        idp: the `idp` command as a real subprocess
  fixtures.mail       inbox: a real SMTP server (aiosmtpd) keeping what the provider mails
  fixtures.logs       log_stream: the provider's JSON log lines, caught in a buffer

Add a theme as tests/fixtures/<theme>.py and list it in `pytest_plugins` below.
"""

pytest_plugins = [
    "fixtures.database",
    "fixtures.cli",
    "fixtures.oidc",
    "fixtures.browser",
    "fixtures.mail",
    "fixtures.logs",
]
