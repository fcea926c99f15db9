"""idp/audit_labels.py names every audit event for the admin's audit page.

The events come from the source (tests/unit/test_docs_audit_events.py reads every audit call)
and from docs/operations.md's table of events (which also names the events written under a
computed name, such as `recover.password_failed`): a new event without a label fails here, as
one without its line in the docs fails there.
"""
from __future__ import annotations

import re
from pathlib import Path

from test_docs_audit_events import _setting_exists, written_events

from idp.audit_labels import LABELS

ROOT = Path(__file__).resolve().parents[2]


def documented_events() -> set[str]:
    """The event names of docs/operations.md's table "The events:": its dotted names
    (`area.name`; the details' own words, such as `reason` or `by`, have no dot), less the
    settings it names (`ops.audit_retention_days`)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("The events:", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", table))
    return {name for name in names if not _setting_exists(name)}


def test_the_documented_events_are_read():
    documented = documented_events()
    assert {"recover.password_failed", "password_change.password_failed", "factor.enrolled"} <= documented
    assert not {name for name in documented if name.startswith("ops.")}  # a setting, not an event


def test_every_event_written_or_documented_has_a_label():
    unlabelled = sorted((set(written_events()) | documented_events()) - set(LABELS))
    assert not unlabelled, f"add a label to idp/audit_labels.py for: {unlabelled}"


def test_every_label_is_of_an_event_that_exists():
    stale = sorted(set(LABELS) - set(written_events()) - documented_events())
    assert not stale, f"labels of events nobody writes: {stale}"


def test_labels_are_distinct():
    """Two events with the same words would look the same on the page."""
    texts = [str(label) for label in LABELS.values()]  # (outside a request: the English)
    assert len(set(texts)) == len(texts)


def _password_check_events() -> set[str]:
    """`directory.check_password` audits a failure as `PURPOSE.password_failed` (a computed name
    the source scan cannot read): one per purpose its callers pass, "recover" being its default."""
    purposes = {"recover"}
    for package in ("idp", "plugins"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if "check_password(" in text:
                purposes |= set(re.findall(r"\bpurpose=\"(\w+)\"", text))
    return {f"{purpose}.password_failed" for purpose in purposes}


def test_every_documented_event_is_written():
    """An event in the table that nothing writes sends an operator looking for what never comes
    (a SIEM rule that never fires, an alert taken for "all quiet")."""
    never_written = sorted(documented_events() - set(written_events()) - _password_check_events())
    assert not never_written, f"docs/operations.md lists events nothing writes: {never_written}"
