"""docs/operations.md, "The audit log", names every event the code writes.

Operators and admins filter `/admin/audit` and their SIEM rules by event name, and they learn
the names from that table: an event written but not listed there is one nobody looks for. The
event names are read from the source (not from a running app), wherever an event is written:
the first argument of an audit call (`audit.record`, `record_about_user`, `record_now`, a
plugin's `directory.audit`, the admin pages' `audit_record`), an `event=` keyword, a dict's
"event" key, or an `EVENT_*` constant. An argument chosen by a conditional counts both ways.
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


def _events_in(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _callee(node) in AUDIT_CALLS and node.args:
                yield from _strings(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "event":
                    yield from _strings(keyword.value)
        elif isinstance(node, ast.Dict):
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
