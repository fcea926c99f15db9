"""The factor registry: discovers plugins from the `idp.factors` entry-point group, once per app.

Flask's own CLI discovers `flask.commands` the same way. `init_app` loads every
entry point (except those named in `factors.disabled`, which are not even
imported), checks that `cls.name` equals the entry-point name and that the
declared attributes are valid, instantiates each factor with its bound
credential and challenge stores and its settings section, and registers:

- one blueprint per plugin, `factor_<name>`, with `template_folder` at the
  plugin's `templates/` (even without routes: that puts
  `factors/<name>/*.html` on the template search path, below the app's own
  folder, so an operator's templates override them) and the plugin's `static/`
  served at `/factors/<name>/static/`;
- the plugin's `device_blueprint()`, if any, at `/factors/<name>/`;
- the plugin's own catalogue, `translations/<lang>/LC_MESSAGES/messages.mo` beside its
  class, merged into the app's (`add_translations`).

The registry lives in `app.extensions["idp.factors"]`; `current_registry()`
returns it. `register(cls)` adds a factor at run time (tests; a third-party
factor) after `create_app` and before the first request.
"""
from __future__ import annotations

import inspect
import logging
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from flask import Blueprint, Flask, current_app

from idp.db import db
from idp.factors.challenges import ChallengeStore
from idp.factors.contract import Factor, validate_class
from idp.factors.errors import FactorLoadError, FactorMisconfigured, FactorNotFound
from idp.factors.store import CredentialStore
from idp.factors.types import AttemptContext, CredentialInfo, Description, FactorKind, FactorUrls, UserRef
from idp.security.origins import browser_origin, is_ip_address

GROUP = "idp.factors"
EXTENSION_KEY = "idp.factors"
# The first-party factor whose codes are issued with a first second factor and retired with the last.
RECOVERY_CODES = "recovery_codes"
log = logging.getLogger(__name__)


def _entry_points() -> Iterable:
    return entry_points(group=GROUP)


def load_classes(disabled: Iterable[str] = ()) -> dict[str, type[Factor]]:
    """Import the classes of every installed, enabled factor (no app needed). Raises FactorLoadError."""
    skip = set(disabled)
    classes: dict[str, type[Factor]] = {}
    declared: dict[str, str] = {}
    for ep in _entry_points():
        if ep.name in declared and declared[ep.name] != ep.value:
            # Two packages claim one name (a third-party "totp"): whichever came first on the
            # path silently took the other's place, and with it its users' credentials.
            raise FactorLoadError(f"factor plugin {ep.name!r} is declared twice: {declared[ep.name]} and "
                                  f"{ep.value}; uninstall one")
        declared[ep.name] = ep.value
        if ep.name in skip or ep.name in classes:
            continue
        try:
            cls = ep.load()
        except ModuleNotFoundError as exc:
            # Stale metadata of a removed plugin: its module is gone. Not fatal, but loud.
            if exc.name and ep.module.startswith(exc.name):
                log.error("factor plugin %r is registered but its module %s is missing; skipped",
                          ep.name, ep.module)
                continue
            raise FactorLoadError(f"factor plugin {ep.name!r} ({ep.value}) cannot be imported: {exc}") from exc
        except Exception as exc:  # an operator problem: name the plugin
            raise FactorLoadError(f"factor plugin {ep.name!r} ({ep.value}) cannot be imported: {exc}") from exc
        problems = validate_class(cls, expected_name=ep.name)
        if problems:
            raise FactorLoadError(f"factor plugin {ep.name!r} ({ep.value}): " + "; ".join(problems))
        classes[ep.name] = cls
    return classes


def _ascii_host(name: str) -> str:
    """`name` in lower case and its IDNA (ASCII) form; as it is when IDNA cannot encode it (the
    start-up check then names it)."""
    try:
        return name.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return name


class FactorRegistry:
    """The installed, enabled factors of one app, in entry-point (then registration) order."""

    def __init__(self, app: Flask, settings) -> None:
        self.app = app
        self.settings = settings
        self.disabled = frozenset(settings.get("factors.disabled") or ())
        self._factors: dict[str, Factor] = {}
        self._settings: dict[str, Mapping[str, Any]] = {}  # each factor's section, as it received it
        # Unbound store for the account and admin pages (every factor's credentials).
        self.store = CredentialStore(None, self.kind_of)

    # --- registration --------------------------------------------------------------------

    def register(self, cls: type[Factor]) -> Factor | None:
        """Validate, instantiate and mount a factor class. Returns the instance (None if disabled).

        Works after `create_app` and before the app handles its first request (Flask refuses
        new blueprints afterwards). Registering the same name twice is a FactorLoadError.
        """
        problems = validate_class(cls)
        if problems:
            raise FactorLoadError(f"factor {getattr(cls, 'name', cls)!r}: " + "; ".join(problems))
        if cls.name in self.disabled:
            return None
        if cls.name in self._factors:
            raise FactorLoadError(f"factor {cls.name!r} is registered twice")
        settings = declared_settings(cls, self.settings.section(f"factors.{cls.name}"))
        factor = cls(store=CredentialStore(cls.name, self.kind_of), challenges=ChallengeStore(cls.name),
                     settings=settings)
        try:
            self._mount(factor)
        except AssertionError as exc:  # Flask refuses blueprints once the app has served a request
            raise FactorLoadError(f"factor {cls.name!r}: register factors before the app's first request "
                                  f"({exc})") from exc
        self._factors[cls.name] = factor
        self._settings[cls.name] = settings
        return factor

    def _mount(self, factor: Factor) -> None:
        folder = Path(inspect.getfile(type(factor))).resolve().parent
        static = folder / "static"
        bp = Blueprint(f"factor_{factor.name}", type(factor).__module__, template_folder=str(folder / "templates"),
                       static_folder=str(static) if static.is_dir() else None,
                       static_url_path="/static" if static.is_dir() else None,
                       url_prefix=f"/factors/{factor.name}")
        self.app.register_blueprint(bp)
        if (folder / "translations").is_dir():
            add_translations(self.app, folder / "translations")
        device = factor.device_blueprint()
        if device is not None:
            self.app.register_blueprint(device, url_prefix=f"/factors/{factor.name}",
                                        name=f"factor_{factor.name}_device")

    # --- lookups -------------------------------------------------------------------------

    def get(self, name: str) -> Factor:
        """The factor called `name`; FactorNotFound when not installed or disabled."""
        try:
            return self._factors[name]
        except KeyError:
            raise FactorNotFound(f"no enabled factor named {name!r} (not installed, or listed in "
                                 f"factors.disabled)") from None

    def all(self, kind: FactorKind | str | None = None) -> list[Factor]:
        """Every enabled factor, optionally of one kind."""
        if kind is None:
            return list(self._factors.values())
        kind = FactorKind(kind)
        return [f for f in self._factors.values() if f.kind == kind]

    def names(self) -> list[str]:
        return list(self._factors)

    def recovery_codes(self) -> Factor | None:
        """The recovery-codes factor (issued with a first second factor), when installed and enabled."""
        return self._factors.get(RECOVERY_CODES)

    def __contains__(self, name: str) -> bool:
        return name in self._factors

    def kind_of(self, name: str) -> FactorKind | None:
        factor = self._factors.get(name)
        return factor.kind if factor else None

    def label_of(self, name: str) -> str:
        """The factor's name as people read it ("Authenticator app"), in their language; the
        internal name for a factor no longer installed (its old credentials still show)."""
        factor = self._factors.get(name)
        return str(factor.label) if factor else name

    def credential_label(self, credential) -> str:
        """A credential's label as people read it (Factor.shown_label: a label the factor gave it
        itself, in their language); as stored for a factor no longer installed."""
        factor = self._factors.get(credential.factor)
        return factor.shown_label(credential) if factor else credential.label

    # --- helpers for the pipeline and the account page -----------------------------------

    def context(self, factor: Factor | str, *, transaction_id: str | None = None, client_name: str | None = None,
                remote_addr: str | None = None, user_agent: str | None = None,
                now: datetime | None = None, session_id: str | None = None) -> AttemptContext:
        """An `AttemptContext` for `factor`: its settings section, URL builder, issuer, RP id and origin.

        RP id and origin come from `factors.webauthn.rp_id`/`origin`, else from the issuer URL.
        """
        from idp.db import utcnow

        name = factor if isinstance(factor, str) else factor.name
        settings = self._settings.get(name) or self.settings.section(f"factors.{name}")
        issuer = self.settings.issuer
        rp_id, origin = self.rp_id_and_origin()
        return AttemptContext(transaction_id=transaction_id, client_name=client_name, remote_addr=remote_addr,
                              user_agent=user_agent, now=now or utcnow(),
                              settings=settings, urls=FactorUrls(name),
                              issuer=issuer, rp_id=rp_id, origin=origin, session_id=session_id)

    def rp_id_and_origin(self) -> tuple[str, str]:
        """The WebAuthn RP id and origin: `factors.webauthn.rp_id`/`origin`, else the issuer's. Both
        in ASCII (an internationalised name's IDNA form): the origin is what a browser sends in
        the client data, and the RP id is hashed as the browser sends it too (the authenticator
        data's rpIdHash), so `bücher.example` must be `xn--bcher-kva.example` on both sides."""
        from urllib.parse import urlsplit

        rp_id = self.settings.get("factors.webauthn.rp_id") or (urlsplit(self.settings.issuer).hostname or "")
        configured = self.settings.get("factors.webauthn.origin") or self.settings.issuer
        return _ascii_host(rp_id), browser_origin(configured) or configured

    def check_rp_id(self) -> None:
        """Browsers refuse every WebAuthn ceremony whose RP id is neither the origin's host nor a
        suffix of it (WebAuthn 5.1.3, "registrable domain suffix"): say so at start-up, not as a
        SecurityError on the first user's page."""
        from urllib.parse import urlsplit

        rp_id, origin = self.rp_id_and_origin()
        # The login pages are served at the issuer, and a browser signs for the page's origin: any
        # other origin refused every key's answer ("That did not work") with nothing said anywhere.
        served_at = browser_origin(self.settings.issuer) or self.settings.issuer
        if origin != served_at:
            raise FactorMisconfigured(f"factors.webauthn.origin {origin!r} must be the issuer's origin {served_at!r}, "
                                      f"where the login pages are served (leave it empty to use the issuer's)")
        host = urlsplit(origin).hostname or ""
        # A suffix of a name only (never of an IP address), and never a bare top-level domain.
        within = host == rp_id or (host.endswith("." + rp_id) and "." in rp_id and not is_ip_address(host))
        if not rp_id or not within:
            raise FactorMisconfigured(f"factors.webauthn.rp_id {rp_id!r} must be the origin's host {host!r} or a "
                                      f"domain it belongs to (factors.webauthn.origin, else the issuer)")

    def rp_id_warning(self) -> str | None:
        """Why browsers will refuse every WebAuthn ceremony although the settings are consistent: an
        IP address as RP id ("This is an invalid domain"), or plain HTTP elsewhere than at localhost
        (not a secure context: no WebAuthn at all). Said by `idp serve`, not refused: the
        default development issuer is http://127.0.0.1:5000, where every other method works (and
        not by every `idp` command, which would print it each time)."""
        from urllib.parse import urlsplit

        if "webauthn" not in self:
            return None
        rp_id, origin = self.rp_id_and_origin()
        if is_ip_address(rp_id):
            return (f"factors.webauthn: the issuer's host {rp_id} is an IP address, which browsers refuse as a "
                    f"WebAuthn RP id: security keys and passkeys cannot be added or used. Serve the issuer at a host "
                    f"name (http://localhost:5000 in development)")
        host = urlsplit(origin).hostname or ""
        if urlsplit(origin).scheme != "https" and host != "localhost" and not host.endswith(".localhost"):
            # Not a secure context: browsers offer no WebAuthn there at all (no PublicKeyCredential).
            return (f"factors.webauthn: browsers offer security keys and passkeys only over HTTPS (or at localhost): "
                    f"at {origin} none can be added or used")
        return None

    def describe_credentials(self, user: UserRef | int) -> list[tuple[Factor, Description]]:
        """The account/admin list: `(factor, description)` per live credential of an enabled factor,
        in creation order, with one row per *set* for factors that hold one set per user
        (`allow_multiple = False`, e.g. the ten recovery codes show as one "Recovery codes" row)."""
        rows, seen = [], set()
        for credential in self.store.list(user):
            factor = self._factors.get(credential.factor)
            if factor is None or (not factor.allow_multiple and factor.name in seen):
                continue
            seen.add(factor.name)
            rows.append((factor, self._describe(factor, credential)))
        return rows

    def describe(self, credential: CredentialInfo) -> Description | None:
        """One credential's description by its factor (None: the factor is not enabled)."""
        factor = self._factors.get(credential.factor)
        return self._describe(factor, credential) if factor is not None else None

    @staticmethod
    def _describe(factor: Factor, credential: CredentialInfo) -> Description:
        """The plugin's `describe`, or the contract's default (label and times) when it raises:
        a bug in a plugin's facts must not take the security page down, from which the user
        removes that very credential."""
        try:
            return factor.describe(credential)
        except Exception:
            log.exception("factor %r failed in describe()", factor.name)
            return Factor.describe(factor, credential)

    def remove_credential(self, user: UserRef | int, credential_id: int) -> CredentialInfo | None:
        """Revoke any factor's credential of `user` and let its factor clean up; the caller commits."""
        info = self.store.revoke(user, credential_id)
        if info is not None and info.factor in self._factors:
            _cleanup_hook(self._factors[info.factor], "on_removed", info)
        return info

    def retire_recovery_codes_if_unprotected(self, user: UserRef | int) -> list[int]:
        """Revoke the user's recovery codes when they hold no second factor any more; their ids
        (the sessions a login with one of them opened are withdrawn with the factor: idp.sessions).

        Recovery codes stand in for a second factor: with none left to stand in for they would
        be a way past the second step that no page shows (2FA reads "not active"), and the
        next first enrolment would keep them instead of issuing a new set. Every path that
        removes a second factor calls this in its own transaction, after the removal (the
        user's own removal, an admin's revocation). The caller commits.
        """
        if RECOVERY_CODES not in self._factors or self.store.second_factors_held(user) > 0:
            return []
        codes = self.store.for_factor(RECOVERY_CODES)
        return [code.id for code in codes.list(user) if self.remove_credential(user, code.id) is not None]


    def account_disabled(self, user: UserRef, *, actor: str, actor_id: int | None) -> None:
        """Tell every factor that the user's account was disabled (`Factor.on_account_disabled`),
        in the caller's transaction (idp.users.set_disabled)."""
        for factor in self._factors.values():
            _cleanup_hook(factor, "on_account_disabled", user, actor=actor, actor_id=actor_id)


    def account_promoted(self, user: UserRef, *, actor: str, actor_id: int | None) -> None:
        """Tell every factor that the user was made an administrator (`Factor.on_account_promoted`),
        in the caller's transaction (idp.users.set_role)."""
        for factor in self._factors.values():
            _cleanup_hook(factor, "on_account_promoted", user, actor=actor, actor_id=actor_id)


def _cleanup_hook(factor: Factor, method: str, *args: Any, **kwargs: Any) -> None:
    """A factor's clean-up after a security action (a credential revoked, an account disabled),
    in a savepoint of the caller's transaction. A plugin is someone else's code: its failure
    loses its own clean-up (logged, its writes rolled back to the savepoint), never the action:
    an admin must be able to disable a compromised account whatever a plugin does."""
    try:
        with db.session.begin_nested():
            getattr(factor, method)(*args, **kwargs)
    except Exception:
        log.exception("factor %r failed in %s(); the action stands without its clean-up", factor.name, method)


def declared_settings(cls: type[Factor], given: Mapping[str, Any]) -> Mapping[str, Any]:
    """The factor's section as it receives it: with `default_settings` declared, checked against
    them (no unknown key, each of its default's type: FactorMisconfigured naming the setting)
    and merged over them; else `given` as it is."""
    import difflib

    from idp.config import type_problem

    defaults = cls.default_settings
    if defaults is None:
        return given
    for key, value in given.items():
        setting = f"factors.{cls.name}.{key}"
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
            hint = f"; did you mean factors.{cls.name}.{close[0]}?" if close else ""
            raise FactorMisconfigured(f"unknown setting {setting}{hint}")
        # (The settings are frozen: a list set in the file or a variable arrives as a tuple.)
        problem = type_problem(list(value) if isinstance(value, tuple) else value, defaults[key])
        if problem:
            raise FactorMisconfigured(f"{setting} {problem}, not {value!r}")
    return MappingProxyType({**defaults, **given})


def add_translations(app: Flask, directory: Path) -> None:
    """Merge a plugin's catalogue (`directory/<lang>/LC_MESSAGES/messages.mo`, the default
    domain) into the app's, so that its label, its messages and the `_()` of its templates
    are in the reader's language; without it they stayed English, the app's catalogue knowing
    none of them. Flask-Babel merges the directories in order: the plugin's go first and the
    core's catalogue last, so a plugin cannot change the wording of the core's own strings."""
    config = app.extensions.get("babel")
    if config is None or str(directory) in config.translation_directories:
        return
    config.translation_directories.insert(0, str(directory))
    domain = vars(config.instance).get("domain_instance")  # (a cached_property, once built)
    if domain is not None:
        domain.cache.clear()  # translations merged before this directory was known


def init_app(app: Flask, settings) -> FactorRegistry:
    """Load the enabled factors once and attach the registry to `app.extensions["idp.factors"]`."""
    registry = FactorRegistry(app, settings)
    for cls in load_classes(registry.disabled).values():
        registry.register(cls)
    _warn_of_factors_nobody_declares(registry, settings)
    if "webauthn" in registry:
        registry.check_rp_id()
    app.extensions[EXTENSION_KEY] = registry
    log.debug("factors enabled: %s", ", ".join(registry.names()) or "none")
    return registry


def _warn_of_factors_nobody_declares(registry: FactorRegistry, settings) -> None:
    """A misspelt factor name in the configuration ("totpp") changes nothing, and nothing else
    would say so: the operator believes the factor is off, or tuned, while the login goes on as
    before. Warnings, not refusals: a plugin uninstalled after it was disabled is named there on
    purpose, and a factor that code registers itself is no entry point."""
    installed = {ep.name for ep in _entry_points()}
    listing = ", ".join(sorted(installed)) or "none"
    unknown = sorted(registry.disabled - installed)
    if unknown:
        log.warning("factors.disabled names %s, which no installed factor plugin declares: it disables "
                    "nothing (installed: %s)", ", ".join(map(repr, unknown)), listing)
    sections = sorted(name for name, value in settings.section("factors").items()
                      if isinstance(value, Mapping) and name not in installed)
    if sections:
        log.warning("[factors.%s] configures a factor no installed plugin declares: its settings do nothing "
                    "(installed: %s)", "], [factors.".join(sections), listing)


def current_registry() -> FactorRegistry:
    """The registry of the current app (inside an app or request context)."""
    return current_app.extensions[EXTENSION_KEY]


def cli_commands() -> dict[str, Any]:
    """`{name: click command}` contributed by installed factors through `Factor.cli_command()`.

    Needs no app (the CLI is built before one exists), so `factors.disabled` is not applied
    here; a command of a disabled factor fails at run time. The core mounts them under
    `idp factor NAME` (see `factor_group`).
    """
    commands: dict[str, Any] = {}
    for ep in _entry_points():
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            log.warning("factor plugin %s cannot be imported: %s", ep.name, exc)
            continue
        command = cls.cli_command() if isinstance(cls, type) and issubclass(cls, Factor) else None
        if command is not None:
            command.name = ep.name
            commands[ep.name] = command
    return commands


def factor_group():
    """The `idp factor` click group with every plugin's command mounted under its name."""
    import click

    @click.group(name="factor", help="Commands contributed by factor plugins.")
    def group() -> None:
        pass

    for name, command in sorted(cli_commands().items()):
        group.add_command(command, name)
    return group
