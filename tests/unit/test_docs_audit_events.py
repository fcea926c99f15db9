"""docs/operations.md, "The audit log", names every event the code writes.

Operators and admins filter `/admin/audit` and their SIEM rules by event name, and they learn
the names from that table: an event written but not listed there is one nobody looks for. The
event names are read from the source (not from a running app), wherever an event is written:
the first argument of an audit call (`audit.record`, `record_about_user`, `record_now`, a
plugin's `directory.audit`, the admin pages' `audit_record`), an `event=` keyword, a dict's
"event" key, or an `EVENT_*` constant. An argument chosen by a conditional counts both ways.

Below them, the rest of the docs against the code: relative links and section references resolve,
named files exist, config/default.toml comments every key and states each checked range, and the
README and docs/ name every `idp` and `idp-authenticator` command and option, and docs/operations.md's
metrics table names every metric `/metrics` exposes, with its labels and the login outcomes.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AUDIT_CALLS = {"record", "record_about_user", "record_now", "audit", "audit_record"}


def _strings(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body)
        yield from _strings(node.orelse)


def _callee(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)


def _index_options(tree: ast.AST) -> set[int]:
    """The dicts given as an index's per-column options (`postgresql_ops={"event": ...}`): keyed by
    column names, the audit table's `event` column among them, they name no event."""
    return {id(keyword.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
            for keyword in node.keywords if keyword.arg and keyword.arg.startswith("postgresql_")}


def _events_in(tree: ast.AST):
    options = _index_options(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _callee(node) in AUDIT_CALLS and node.args:
                yield from _strings(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "event":
                    yield from _strings(keyword.value)
        elif isinstance(node, ast.Dict) and id(node) not in options:
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "event":
                    yield from _strings(value)
        elif isinstance(node, ast.Assign):
            if any(isinstance(target, ast.Name) and target.id.startswith("EVENT_") for target in node.targets):
                yield from _strings(node.value)


def written_events() -> dict[str, str]:
    """Each event name the provider and its plugins write -> the first file that writes it."""
    events: dict[str, str] = {}
    for package in ("idp", "plugins"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for event in _events_in(ast.parse(path.read_text(encoding="utf-8"))):
                events.setdefault(event, str(path.relative_to(ROOT)))
    return events


def test_the_extractor_finds_events_of_every_kind_of_call():
    events = written_events()
    # audit.record, a conditional argument, record_about_user, a plugin's directory.audit, EVENT_* constants
    for event in ("consent.granted", "login.second_factor_denied", "token.revoked",
                  "webauthn.clone_suspected", "policy.grace_changed", "factor.revoked"):
        assert event in events


def test_operations_md_lists_every_event_the_code_writes():
    documented = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = {event: path for event, path in written_events().items() if f"`{event}`" not in documented}
    assert not missing, f"add these to docs/operations.md, 'The audit log': {missing}"


# --- The rest of the docs against the code: links, named files, settings, commands. Each class of
# error here was found by hand once (a setting left out of the docs, a command's option nobody
# could find but in --help); these keep them from coming back.

import re  # noqa: E402
import tomllib  # noqa: E402

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_NAMED_PATH = re.compile(r"(?<![\w./-])((?:idp|plugins|authenticator|docs|tests|bench|examples|scripts|config)/[\w./*-]*\w)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", markdown, re.MULTILINE)}


def _all_docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def test_relative_links_between_docs_resolve():
    broken = []
    for doc in DOCS:
        for target in _LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto: ...
            path, _, fragment = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved.read_text(encoding="utf-8")):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_files_the_docs_name_exist():
    """`idp/account/activity.py`, `tests/integration/test_bypass.py`, `plugins/push/settings.py`: a
    reader goes and opens them. A module's attribute (`idp/login/pipeline.start`) names its file;
    `bench/results/admin-*.md` is a pattern some file must match."""
    missing = []
    for doc in [*DOCS, ROOT / "config" / "default.toml"]:
        for named in _NAMED_PATH.findall(doc.read_text(encoding="utf-8")):
            if "DATE" in named:
                continue  # bench/results/DATE.md: a file a run writes
            candidates = [named, f"{named}.py", named.rsplit(".", 1)[0] + ".py"]
            if not any(any(ROOT.glob(candidate)) for candidate in candidates):  # (admin-*.md: a glob)
                missing.append(f"{doc.relative_to(ROOT)}: {named}")
    assert not missing, missing


_SECTION_REFERENCE = re.compile(r'((?:[\w-]+/)*[\w-]+\.md|README)`?,? \(?"([^"]+)"')


def test_sections_named_in_the_docs_exist():
    """`(docs/operations.md, "Housekeeping")`, `README ("Production")`: the quoted title is a heading
    of that document, or the bold lead of one of its paragraphs or items (`**Clients without a secret:
    ...**`, `- **Choice: reads that precede every write ...**`)."""
    sources = [*DOCS, ROOT / "config" / "default.toml", *sorted((ROOT / "idp").rglob("*.py")),
               *sorted((ROOT / "plugins").rglob("*.py"))]
    wrong = []
    for source in sources:
        for document, title in _SECTION_REFERENCE.findall(source.read_text(encoding="utf-8")):
            path = ROOT / ("README.md" if document == "README" else document)
            if not path.exists():
                path = ROOT / "docs" / document
            if not path.exists():
                continue  # CONTRACT.md and the other shared documents live outside the repository
            markdown = path.read_text(encoding="utf-8")
            titles = re.findall(r"^#+ (.*)$", markdown, re.MULTILINE) + re.findall(r"^(?:- )?\*\*(.+?)\*\*", markdown, re.MULTILINE)
            title = " ".join(title.split())
            if not any(title in candidate.replace("`", "") or title in candidate for candidate in titles):
                wrong.append(f"{source.relative_to(ROOT)}: {document}, \"{title}\"")
    assert not wrong, wrong


def test_the_readme_layout_names_every_top_level_entry_and_test_folder():
    """What a reader finds at the top of a checkout is in README.md's "Layout", and so is each folder of tests/."""
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1].split("```")[1]
    entries = {path.name for path in ROOT.iterdir() if not path.name.startswith(".") or path.name == ".ci"}
    made = {"README.md", "instance", "test-artifacts", "build", "dist"}  # (and *.egg-info: made by make, pip)
    unnamed = sorted(entry for entry in entries - made
                     if not entry.endswith(".egg-info") and not re.search(rf"(?<![\w/.]){re.escape(entry)}\b", layout))
    assert not unnamed, f"README.md, Layout: {unnamed}"
    folders = sorted(path.name for path in (ROOT / "tests").iterdir() if path.is_dir() and path.name != "__pycache__")
    assert [folder for folder in folders if f"{folder}/" not in layout] == []


def _default_settings() -> dict:
    return tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))


def _setting_exists(dotted: str) -> bool:
    node = _default_settings()
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_setting_in_default_toml_has_a_comment():
    """CONTRACT.md: every key documented in config/default.toml. A key may share the comment of
    the keys right above it (`digits` and `algorithm` under one), never go without one."""
    undocumented, commented, section = [], False, ""
    for line in (ROOT / "config" / "default.toml").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            commented = True
        elif stripped.startswith("["):
            section, commented = stripped, False
        elif not stripped:
            commented = False
        elif "=" in stripped and not commented:
            undocumented.append(f"{section} {stripped.split('=')[0].strip()}")
    assert not undocumented, undocumented


def _comments_above_settings() -> dict[str, str]:
    """Each setting of config/default.toml -> the comment above it (shared with the keys right
    above it that have none of their own)."""
    comments, section, block, after_key = {}, "", [], False
    for line in (ROOT / "config" / "default.toml").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section, block, after_key = stripped.strip("[]"), [], False
        elif stripped.startswith("#"):
            block, after_key = ([] if after_key else block) + [stripped.lstrip("# ")], False
        elif not stripped:
            block, after_key = [], False
        else:
            comments[f"{section}.{stripped.split('=')[0].strip()}"] = " ".join(block)
            after_key = True
    return comments


def _spellings(number: float) -> set[str]:
    """How a comment may give a bound: 86400, 86,400, 1 day(s), 24 hours, 10 years, 4 GiB."""
    spelt = {f"{number:g}", f"{int(number):,}"}
    for unit, seconds in (("hour", 3600), ("day", 86400), ("year", 365 * 86400)):
        if number and number % seconds == 0:
            spelt |= {f"{number // seconds:g} {unit}", f"{number // seconds:g} {unit}s"}
    if number and number % (1024 * 1024) == 0:
        spelt.add(f"{number // (1024 * 1024):g} GiB")
    return spelt


def test_default_toml_gives_the_range_each_number_is_checked_against():
    """README: a number outside "the range its comment in config/default.toml gives" stops the start.
    Each bound of idp/config_ranges.py is therefore in the comment above its setting."""
    from idp.config_ranges import BOUNDS

    comments = _comments_above_settings()
    unstated = []
    for dotted, low, high in BOUNDS:
        comment = comments[dotted]
        for bound in (low, high):
            if not any(re.search(rf"(?<![\d.,]){re.escape(spelt)}(?![\d])", comment) for spelt in _spellings(bound)):
                unstated.append(f"{dotted}: {bound:.0f}")
    assert not unstated, unstated


def test_the_settings_contract_extensions_lists_exist():
    text = (ROOT / "docs" / "contract-extensions.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| `([a-z_.]+)`(?:, `([a-z_.]+)`)?", table, re.MULTILINE)
    settings = [name for row in named for name in row if name]
    assert len(settings) >= 5
    assert [name for name in settings if not _setting_exists(name)] == []


def _idp_commands():
    import click

    from idp.cli import cli

    def walk(command, path):
        yield path, command
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])

    return list(walk(cli, []))


def test_every_idp_command_and_option_is_in_the_docs():
    """README's command list and docs/*.md name each command (`idp user sign-out`, or
    `idp factor qr_recovery issue | list | revoke`) and each of its options."""
    import click

    text = _all_docs_text()
    commands = _idp_commands()
    assert len(commands) > 30
    missing = []
    for path, command in commands:
        if path and not isinstance(command, click.Group):
            *group, name = path
            spelt = re.compile(r"idp %s ?(?:[\w-]+ ?\\?\| ?)*%s\b" % (" ".join(group), re.escape(name)))
            if not spelt.search(text):
                missing.append("idp " + " ".join(path))
        for parameter in command.params:
            for option in [*parameter.opts, *parameter.secondary_opts]:
                if option.startswith("--") and option not in ("--help",) and option not in text:
                    missing.append(" ".join(["idp", *path, option]))
    assert not missing, missing


def test_every_authenticator_command_and_option_is_in_the_docs():
    import argparse

    from authenticator.cli import build_parser

    text = _all_docs_text()
    parser = build_parser()
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    missing = [f"idp-authenticator {option}" for action in parser._actions for option in action.option_strings
               if option.startswith("--") and option != "--help" and option not in text]
    for name, command in commands.choices.items():
        if not re.search(r"(?:idp-authenticator|^  |\| )%s\b" % re.escape(name), text, re.MULTILINE):
            missing.append(f"idp-authenticator {name}")
        missing.extend(f"idp-authenticator {name} {option}" for action in command._actions
                       for option in action.option_strings
                       if option.startswith("--") and option != "--help" and option not in text)
    assert not missing, missing


def _documented_metrics() -> dict[str, tuple[set[str], str]]:
    """docs/operations.md's "Metrics" table: each metric -> (its labels, what the row says)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(idp_\w+)` \|([^|]*)\| (.*) \|$", table, re.MULTILINE)
    return {name: (set(re.findall(r"`(\w+)`", labels)), meaning) for name, labels, meaning in rows}


def test_the_metrics_table_names_every_metric_with_its_labels():
    """A Prometheus rule or dashboard is written from that table: a metric it names must be one
    `/metrics` exposes (a counter as `NAME_total`), with those labels, and none left out."""
    from prometheus_client.metrics import MetricWrapperBase

    from idp.ops import metrics

    exposed = {(f"{m._name}_total" if m._type == "counter" else m._name): set(m._labelnames)
               for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    documented = {name: labels for name, (labels, _meaning) in _documented_metrics().items()}
    assert len(exposed) >= 6
    assert documented == exposed


def test_the_metrics_table_gives_every_login_outcome():
    """`idp_logins_total{outcome}`: an alert on `locked` needs to know the word exists."""
    counted = {outcome for path in sorted((ROOT / "idp").rglob("*.py"))
               for outcome in re.findall(r"LOGINS\.labels\(outcome=\"(\w+)\"\)", path.read_text(encoding="utf-8"))}
    _labels, meaning = _documented_metrics()["idp_logins_total"]
    assert counted >= {"success", "bad_password"}
    assert [outcome for outcome in sorted(counted) if f"`{outcome}`" not in meaning] == []


# Variables the docs name on purpose although they set nothing: placeholders of the naming rule,
# the misspelling config/default.toml shows being refused, and bench/README.md's note on the
# variables the bench used before they were removed.
_NOT_SETTINGS = {"IDP_SECTION__KEY", "IDP_FACTORS__NAME__KEY", "IDP_TOKENS__ACESS_TOKEN_TTL",
                 "IDP_RATELIMIT__PASSWORD_PER_ACCOUNT"}


def _table_columns() -> set[str]:
    import idp.models  # noqa: F401  (registers the tables)
    from idp.db import Base

    return {f"{table.name}.{column.name}" for table in Base.metadata.tables.values() for column in table.columns}


def _endpoints() -> set[str]:
    """The Flask endpoints the code links to (`url_for("login.poll", ...)`)."""
    return {name for package in ("idp", "plugins") for path in sorted((ROOT / package).rglob("*"))
            if path.suffix in (".py", ".html") for name in re.findall(r"url_for\(\s*[\"']([\w.]+)[\"']",
                                                                       path.read_text(encoding="utf-8"))}


def test_every_setting_the_docs_name_exists():
    """`tokens.client_cache_ttl`, `[factors.push]`, `IDP_OPS__METRICS_ENABLED`: an operator copies
    them into a file or an environment, and an unknown key stops the start. A dotted name of a
    section of config/default.toml is a setting, a section, an audit event (`login.succeeded`),
    a table's column (`tokens.dpop_jkt`) or an endpoint (`login.poll`)."""
    from test_audit_labels import documented_events

    defaults = _default_settings()
    sections = {f"factors.{name}" for name, value in defaults["factors"].items() if isinstance(value, dict)}
    known = sections | set(written_events()) | documented_events() | _table_columns() | _endpoints()
    unknown = []
    for doc in [*DOCS, ROOT / "config" / "default.toml"]:
        text = doc.read_text(encoding="utf-8")
        for dotted in re.findall(r"`\[?([a-z_]+(?:\.[a-z_0-9]+)+)\]?(?: = [^`]*)?`", text):
            if dotted.split(".")[0] in defaults and dotted not in known and not _setting_exists(dotted):
                unknown.append(f"{doc.relative_to(ROOT)}: {dotted}")
        for variable in re.findall(r"\bIDP_[A-Z0-9]+(?:_[A-Z0-9]+)*__[A-Z0-9_]+", text):
            if variable not in _NOT_SETTINGS and not _setting_exists(variable[4:].lower().replace("__", ".")):
                unknown.append(f"{doc.relative_to(ROOT)}: {variable}")
    assert not unknown, unknown


def test_the_readme_table_of_fixed_variables_is_the_codes():
    """README's "Configuration" table: the names CONTRACT.md fixes, each with the default
    config/default.toml gives it (where the table quotes one)."""
    from idp.config import FIXED_VARIABLES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(IDP_\w+)` \| .* \| ([^|]*) \|$", table, re.MULTILINE))
    assert set(rows) == set(FIXED_VARIABLES)
    defaults = _default_settings()
    for variable, (section, key) in FIXED_VARIABLES.items():
        quoted = re.fullmatch(r"`([^`]*)`", rows[variable].strip())
        if quoted:
            assert quoted.group(1) == defaults[section][key], variable


def test_factor_plugins_md_names_everything_a_plugin_may_call_in_the_directory():
    """docs/factor-plugins.md: "What a plugin may use of the rest of the provider is in
    `idp.factors.directory`", then the list: a plugin author reads it instead of the module."""
    import inspect

    from idp.factors import directory

    text = (ROOT / "docs" / "factor-plugins.md").read_text(encoding="utf-8")
    public = [name for name, function in inspect.getmembers(directory, inspect.isfunction)
              if not name.startswith("_") and function.__module__ == directory.__name__]
    assert len(public) > 20
    assert [name for name in public if not re.search(rf"`(?:directory\.)?{name}\b", text)] == []
