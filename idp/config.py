"""Settings: config/default.toml, then the file named by IDP_CONFIG, then IDP_* variables.

The result is one frozen `Settings` object built once in `create_app`; nothing else
reads the environment. Production guards live here so that a misconfigured
production server refuses to start instead of running insecurely.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

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


class ConfigError(Exception):
    """A setting is missing, malformed or unsafe for the chosen environment."""


def _merge(base: dict, override: Mapping) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


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
    if isinstance(default, (int, float)) and (isinstance(parsed, bool) or not isinstance(parsed, (int, float))):
        raise ConfigError(f"{name} must be a number, not {raw!r}")
    if isinstance(default, int) and not isinstance(parsed, int):
        raise ConfigError(f"{name} must be a whole number, not {raw!r}")
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


def _env_overrides(environ: Mapping[str, str], defaults: Mapping) -> dict:
    overrides: dict = {}
    for name, value in environ.items():
        if name in FIXED_VARIABLES:
            _set_path(overrides, list(FIXED_VARIABLES[name]), value)
        elif name.startswith("IDP_") and "__" in name:
            path = [p.lower() for p in name[4:].split("__")]
            _set_path(overrides, path, _parse_env_value(value, _default_at(defaults, path), name))
    return overrides


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
    extra_file = environ.get("IDP_CONFIG")
    if extra_file:
        try:
            tree = _merge(tree, tomllib.loads(Path(extra_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read IDP_CONFIG={extra_file}: {exc}") from exc
    tree = _merge(tree, _env_overrides(environ, tree))
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


def validate(settings: Settings) -> None:
    if settings.env not in ("development", "production"):
        raise ConfigError(f"IDP_ENV must be development or production, not {settings.env!r}")
    parts = urlsplit(settings.issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"issuer must be an absolute http(s) URL without query: {settings.issuer!r}")
    if settings.production:
        if settings.secret_key == DEV_SECRET_KEY or len(settings.secret_key) < 32:
            raise ConfigError("production refuses the development secret key: set IDP_SECRET_KEY (32+ chars)")
        if parts.scheme != "https":
            raise ConfigError("production demands an https issuer (IDP_ISSUER)")
        if not settings.get("security.encryption_keys"):
            raise ConfigError("production demands real encryption keys: set security.encryption_keys")
        if str(settings.get("mail.host", "console")) == "console":
            raise ConfigError("production refuses the console notifier, which writes one-time codes to the log: "
                              "set mail.host to an SMTP relay (IDP_MAIL__HOST)")
