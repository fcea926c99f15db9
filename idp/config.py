"""Settings: config/default.toml, then the file named by IDP_CONFIG, then IDP_* variables.

The result is one frozen `Settings` object built once in `create_app`; nothing else
reads the environment. Production guards live here so that a misconfigured
production server refuses to start instead of running insecurely, and so do the
checks of every setting that would otherwise fail later, with a traceback deep in a
library or a request: unknown keys, values of the wrong type (variables and the
IDP_CONFIG file alike), unusable URLs, keys, networks and log levels, numbers out of range
(idp.config_ranges). Each is one
`ConfigError` naming the setting; `idp` prints it as one line.
"""
from __future__ import annotations

import difflib
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

from idp import config_ranges
from idp.security.origins import LOOPBACK_HOSTS

# idp/default.toml links to config/default.toml, so a wheel carries the documented defaults.
DEFAULT_FILE = Path(__file__).resolve().parent / "default.toml"

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"

# CONTRACT.md's fixed variable names and where each lands.
FIXED_VARIABLES = {
    "IDP_DATABASE_URL": ("server", "database_url"),
    "IDP_ISSUER": ("server", "issuer"),
    "IDP_SECRET_KEY": ("server", "secret_key"),
    "IDP_REDIS_URL": ("server", "redis_url"),
    "IDP_ENV": ("server", "env"),
}


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe for the chosen environment.

    A ValueError, as were the errors of the checks it now reports at start-up (a malformed
    network in idp.ops.proxy, an encryption key the KeyRing refuses), so callers that caught
    those still do."""


def _merge(base: dict, override: Mapping) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _type_problem(value: Any, default: Any) -> str | None:
    """What is wrong with `value` for a setting whose default is `default`, or None if it fits.

    The default's type is the setting's type: a whole number where an int is expected (a float is
    refused: TTLs and counts are whole), any number where a float is, true/false, text, a list or a
    table. A setting without a default (a third-party plugin's) takes anything.
    """
    if default is None:
        return None
    if isinstance(default, Mapping):
        return None if isinstance(value, Mapping) else "is a section: set the keys inside it"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be text (a quoted string)"
    if isinstance(default, list):
        return None if isinstance(value, list) else "must be a list"
    return None


#: For a factor plugin's declared settings (Factor.default_settings, checked by the registry).
type_problem = _type_problem


def _parse_env_value(raw: str, default: Any = None, name: str = "") -> Any:
    """An IDP_* value, read as the type of the setting it overrides (config/default.toml).

    A string setting takes the text as given (a password "123" stays text); a boolean takes
    true/false (also 1/0, yes/no, on/off, any case); a number must be one; a list takes a TOML
    array or comma-separated items (`IDP_FACTORS__DISABLED=push,webauthn`). Settings without a
    default are read as a TOML value when they parse as one, else as text.
    """
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    if isinstance(default, str):
        return raw
    try:
        parsed = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = raw
    if isinstance(default, list):
        if isinstance(parsed, list):
            return parsed
        return [item.strip() for item in raw.split(",") if item.strip()]
    problem = _type_problem(parsed, default)
    if problem:
        raise ConfigError(f"{name} {problem}, not {raw!r}")
    return parsed


def _default_at(tree: Mapping, path: list[str]) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set_path(tree: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _dotted(path: list[str]) -> str:
    return ".".join(path)


def _variable_for(dotted: str) -> str:
    """The IDP_* variable that sets a setting: a fixed name of CONTRACT.md, else IDP_SECTION__KEY."""
    for name, path in FIXED_VARIABLES.items():
        if _dotted(list(path)) == dotted:
            return name
    return "IDP_" + dotted.upper().replace(".", "__")


def _leaf_names(tree: Mapping, prefix: str = "") -> list[str]:
    names = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        names.extend(_leaf_names(value, name + ".") if isinstance(value, Mapping) else [name])
    return names


def _in_undocumented_plugin_section(defaults: Mapping, path: list[str], value: Any = None) -> bool:
    """Whether `path` lies in `factors.NAME` of a factor that config/default.toml does not document.

    A third-party factor keeps its settings there with defaults in its own code, and may be
    registered at run time without an entry point (registry.register), so nothing known when
    the settings load can tell its keys from typos: they are left unchecked. The sections that
    are documented (the bundled factors) and the scalars of `[factors]` itself are checked.
    """
    if len(path) < 2 or path[0] != "factors" or path[1] in defaults.get("factors", {}):
        return False
    return len(path) >= 3 or isinstance(value, Mapping)


def _check_known(defaults: Mapping, path: list[str], value: Any, source: str) -> None:
    """Refuse a key config/default.toml does not have: a misspelt setting would otherwise be ignored."""
    if _default_at(defaults, path) is not None or _in_undocumented_plugin_section(defaults, path, value):
        return
    dotted = _dotted(path)
    close = difflib.get_close_matches(dotted, _leaf_names(defaults), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"unknown setting {dotted} ({source}){hint}")


def _env_overrides(environ: Mapping[str, str], defaults: Mapping, current: Mapping) -> dict:
    """IDP_* variables as a nested dict: each must name a setting of `defaults`, and is read as the
    type of its `current` value (the IDP_CONFIG file's, type-checked already, or the default)."""
    overrides: dict = {}
    for name, value in environ.items():
        if name in FIXED_VARIABLES:
            _set_path(overrides, list(FIXED_VARIABLES[name]), value)
        elif name.startswith("IDP_") and "__" in name:
            path = [p.lower() for p in name[4:].split("__")]
            _check_known(defaults, path, None, f"from {name}")
            _set_path(overrides, path, _parse_env_value(value, _default_at(current, path), name))
    return overrides


def _check_file_values(tree: Mapping, defaults: Mapping, source: str, path: list[str] | None = None) -> None:
    """Check an IDP_CONFIG file as IDP_* variables are checked: known keys, each of its default's type."""
    for key, value in tree.items():
        here = [*(path or []), key]
        _check_known(defaults, here, value, source)
        default = _default_at(defaults, here)
        if isinstance(value, Mapping) and (default is None or isinstance(default, Mapping)):
            _check_file_values(value, defaults, source, here)
            continue
        problem = _type_problem(value, default)
        if problem:
            raise ConfigError(f"{_dotted(here)} ({source}) {problem}, not {_shown(here, value)}")


_SECRET_WORDS = ("password", "secret", "pepper", "encryption_keys")


def _shown(path: list[str], value: Any) -> str:
    """The value for an error message, or only its type when the setting holds a secret."""
    if any(word in path[-1] for word in _SECRET_WORDS):
        return f"a value of type {type(value).__name__}"
    return repr(value)


def _read_config_file(name: str, defaults: Mapping) -> dict:
    try:
        tree = tomllib.loads(Path(name).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read IDP_CONFIG={name}: {exc}") from exc
    _check_file_values(tree, defaults, f"in IDP_CONFIG={name}")
    return tree


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Settings:
    """All settings, validated. Sections are read-only mappings (`settings.section("tokens")`)."""

    env: str
    issuer: str
    secret_key: str
    database_url: str
    redis_url: str
    trusted_proxies: tuple[str, ...]
    tree: Mapping[str, Any] = field(repr=False)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def section(self, name: str) -> Mapping[str, Any]:
        node: Any = self.tree
        for part in name.split("."):
            node = node.get(part, MappingProxyType({}))
        return node

    def get(self, dotted: str, default: Any = None) -> Any:
        section, _, key = dotted.rpartition(".")
        return self.section(section).get(key, default)


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None,
                  instance_path: str | os.PathLike | None = None) -> Settings:
    """Build the settings. `overrides` (a nested dict, or dotted keys) wins over everything (tests)."""
    environ = os.environ if environ is None else environ
    tree = tomllib.loads(DEFAULT_FILE.read_text())
    defaults = tree
    extra_file = environ.get("IDP_CONFIG")
    if extra_file:
        tree = _merge(tree, _read_config_file(extra_file, defaults))
    tree = _merge(tree, _env_overrides(environ, defaults, tree))
    for key, value in (overrides or {}).items():
        if "." in key:
            nested: dict = {}
            _set_path(nested, key.split("."), value)
            tree = _merge(tree, nested)
        else:
            tree = _merge(tree, {key: value})

    server = tree["server"]
    database_url = server.get("database_url") or ""
    if not database_url:
        folder = Path(instance_path or Path.cwd() / "instance")
        folder.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{folder / 'idp.sqlite'}"
    settings = Settings(
        env=server.get("env", "development"),
        issuer=str(server["issuer"]).rstrip("/"),
        secret_key=server["secret_key"],
        database_url=database_url,
        redis_url=server.get("redis_url") or "",
        trusted_proxies=tuple(server.get("trusted_proxies") or ()),
        tree=_freeze(tree),
    )
    validate(settings)
    return settings


MIN_PRODUCTION_SECRET_KEY = 32
# What idp.db can run on: SQLite (pysqlite) and PostgreSQL through psycopg 3, whose connection
# state idp.lone reads; anything else fails deep inside SQLAlchemy (a missing driver module).
DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
# Both the rate limiter (limits) and the push wake-ups (redis-py) must understand the URL.
REDIS_SCHEMES = ("redis", "rediss")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def mail_goes_to_console(settings: Settings) -> bool:
    """Whether `[mail] host` selects the console notifier, which writes e-mailed codes to the log:
    "console" in any case or spacing, or empty (idp.notify.factory builds the notifier from this)."""
    return (str(settings.get("mail.host") or "").strip() or "console").lower() == "console"


def validate(settings: Settings) -> None:
    """Refuse at start-up what would otherwise fail later, deep inside a library or a request."""
    if settings.env not in ("development", "production"):
        raise ConfigError(f"IDP_ENV must be development or production, not {settings.env!r}")
    _check_issuer(settings.issuer)
    if not settings.secret_key:  # (Flask then refuses every session: each login would be a 500)
        raise ConfigError(f"{_named('server.secret_key')} must not be empty")
    _check_database_url(settings.database_url)
    _check_redis_url(settings.redis_url)
    _check_encryption_keys(settings)
    _check_networks("server.trusted_proxies", settings.trusted_proxies)
    _check_networks("ops.metrics_networks", settings.get("ops.metrics_networks") or ())
    _check_log_level(settings.get("server.log_level", "INFO"))
    _check_mail_sender(settings.get("mail.sender", ""))
    _check_ranges(config_ranges.problems(settings.get, _named))
    if settings.production:
        _check_production(settings)


def _check_ranges(found: list[str]) -> None:
    if found:
        raise ConfigError("; ".join(found))


def _named(dotted: str) -> str:
    """A setting as an operator may have set it: `server.redis_url (IDP_REDIS_URL)`."""
    return f"{dotted} ({_variable_for(dotted)})"


def _check_issuer(issuer: str) -> None:
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"issuer must be an absolute http(s) URL without query: {issuer!r}")
    if not issuer.startswith(f"{parts.scheme}://"):
        # urlsplit lower-cases the scheme; what reads the issuer as text (the session cookie's
        # Secure flag and __Host- name, HSTS: idp.app, idp.ops) would take "HTTPS://" for http.
        raise ConfigError(f"issuer must begin with {parts.scheme}:// in lower case: {issuer!r}")
    if parts.path not in ("", "/"):
        # The endpoints are served at the root of the origin (/authorize, /.well-known/...):
        # discovery would publish addresses under the path that nothing answers.
        raise ConfigError(f"issuer must be an origin without a path (the provider serves at its root): {issuer!r}")


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        driver = parsed.drivername
        parsed.port  # noqa: B018 - a port that is not a number fails here, not deep in the engine
    except (ArgumentError, ValueError):
        raise ConfigError(f"{_named('server.database_url')} must be sqlite:///PATH or "
                          "postgresql+psycopg://USER@HOST/DATABASE, not a valid URL (check the host, the port "
                          "and characters that need percent-encoding)") from None
    if driver not in DATABASE_DRIVERS:
        # The URL may hold a password: name only its driver.
        found = f"not a {driver!r} URL" if driver else "not a URL"
        raise ConfigError(f"{_named('server.database_url')} must be sqlite:///PATH or "
                          f"postgresql+psycopg://USER@HOST/DATABASE, {found}")


def _check_redis_url(url: str) -> None:
    if not url:
        return
    invalid = ConfigError(f"{_named('server.redis_url')} is not a valid URL (check the host, port and "
                          "characters that need percent-encoding)")  # never the URL: it may hold a password
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        raise invalid from None
    if scheme not in REDIS_SCHEMES:
        found = f"not a {scheme!r} URL" if scheme else "not a URL"
        raise ConfigError(f"{_named('server.redis_url')} must be redis://HOST[:PORT][/DB] or rediss://..., {found}")
    from redis.connection import parse_url

    try:
        parse_url(url)
    except ValueError:
        raise invalid from None


def _check_encryption_keys(settings: Settings) -> None:
    """Build the key ring once here, as create_app will, so that a bad key stops the start."""
    from idp.security.secrets import KeyRing

    encoded = settings.get("security.encryption_keys") or ()
    if not all(isinstance(entry, str) for entry in encoded):
        raise ConfigError(f"{_named('security.encryption_keys')} must be a list of \"KEY_ID:BASE64URL\" strings")
    try:
        KeyRing.from_settings(list(encoded), settings.secret_key)
    except ValueError as exc:  # binascii.Error too; the message never holds key material
        raise ConfigError(f"{_named('security.encryption_keys')}: {exc}") from None


def _check_networks(dotted: str, values) -> None:
    from idp.ops.proxy import parse_networks

    try:
        parse_networks(values)
    except ValueError as exc:
        raise ConfigError(f"{_named(dotted)}: {exc}") from None


def _check_proxies_are_not_everyone(values) -> None:
    """Production: no trusted proxy range that is every address (0.0.0.0/0, ::/0). Any client
    reaching the server would choose, with one X-Forwarded-For, the address every per-address
    limit and lockout counts it under and the audit log shows; the proxies' own range is what to
    name (development starts, with a warning: idp.ops.proxy.warn_of_everyone)."""
    from idp.ops.proxy import every_address, parse_networks

    everyone = every_address(parse_networks(values))
    if everyone:
        raise ConfigError(f"production refuses {_named('server.trusted_proxies')} naming {', '.join(everyone)}, "
                          "every address: any client could choose the address its rate limits and lockouts "
                          "count, with one X-Forwarded-For; name your reverse proxies' own addresses or range "
                          "(e.g. 10.0.0.0/8 for a container network)")


def _check_mail_sender(sender) -> None:
    """One address, as the From of every mail: a relay refuses anything else (the reset links die,
    the recovery codes are never sent) and a line break cannot even be written into the header."""
    from email.utils import getaddresses

    text = str(sender)
    if not text.strip():  # the notifier's default, idp@localhost (idp.notify.factory)
        return
    found = getaddresses([text]) if "\r" not in text and "\n" not in text else []
    local, at, domain = found[0][1].rpartition("@") if len(found) == 1 else ("", "", "")
    if not (local and at and domain):
        raise ConfigError(f"{_named('mail.sender')} must be one e-mail address (idp@example.com, or "
                          f"\"Identity <idp@example.com>\"), not {text!r}")


def _check_log_level(level) -> None:
    if str(level).upper() not in logging.getLevelNamesMapping():
        raise ConfigError(f"{_named('server.log_level')} must be one of {', '.join(LOG_LEVELS)}, not {level!r}")


def _check_production(settings: Settings) -> None:
    if settings.secret_key == DEV_SECRET_KEY:
        raise ConfigError("production refuses the development secret key: set IDP_SECRET_KEY to a random value "
                          f"of at least {MIN_PRODUCTION_SECRET_KEY} characters")
    if len(settings.secret_key) < MIN_PRODUCTION_SECRET_KEY:
        raise ConfigError(f"{_named('server.secret_key')} is too short for production: "
                          f"{len(settings.secret_key)} characters, at least {MIN_PRODUCTION_SECRET_KEY} are needed")
    if urlsplit(settings.issuer).scheme != "https":
        raise ConfigError("production demands an https issuer (IDP_ISSUER)")
    if not settings.get("security.encryption_keys"):
        raise ConfigError("production demands real encryption keys: set security.encryption_keys")
    if not settings.get("server.database_url"):
        # The default is a SQLite file in the app's instance folder: for an installed package, inside
        # its virtualenv (venv/var/idp.app-instance), which a reinstall of the virtualenv deletes.
        raise ConfigError(f"production demands a database named in {_named('server.database_url')}: the "
                          f"default, {settings.database_url.removeprefix('sqlite:///')}, lies in the app's "
                          "instance folder, which reinstalling its virtualenv deletes (e.g. "
                          "postgresql+psycopg://idp@db/idp, or sqlite:////var/lib/idp/idp.sqlite)")
    _check_ranges(config_ranges.production_problems(settings.get, _named))
    _check_proxies_are_not_everyone(settings.trusted_proxies)
    if mail_goes_to_console(settings):
        raise ConfigError("production refuses the console notifier, which writes one-time codes to the log: "
                          "set mail.host to an SMTP relay (IDP_MAIL__HOST)")
    host = str(settings.get("mail.host") or "").strip().lower()
    if not settings.get("mail.starttls") and host not in LOOPBACK_HOSTS:
        # E-mailed recovery codes (and the SMTP password) would cross the network in clear.
        raise ConfigError(f"production refuses sending one-time codes to {_named('mail.host')} {host!r} in "
                          "clear: set mail.starttls = true (IDP_MAIL__STARTTLS), or relay through an MTA on "
                          "localhost")
