#!/usr/bin/env bash
# The one message catalogue of the provider and its first-party plugins: idp/translations.
#
#   scripts/translations.sh          re-extract, update every language's .po, compile the .mo files
#   scripts/translations.sh --check  change nothing; fail if the source and the catalogue differ in
#                                    their messages, or a language has untranslated or fuzzy entries
#
# After a run, fill every empty msgstr in idp/translations/<lang>/LC_MESSAGES/messages.po
# (no fuzzy guesses are made: a near-match is usually a wrong translation), run the script
# again, and commit messages.pot, the .po and the .mo together: the compiled .mo files are
# committed so that a wheel works without a build step.
# tests/integration/test_i18n.py fails while anything is missing.
#
# Sources and keywords: babel.cfg (idp/ and plugins/, Python and templates); keywords are
# Babel's defaults (_, gettext, ngettext, N_, ...) plus _l, lazy_gettext and plural_text
# (idp.template_i18n's ngettext for Python, with its count formatted).
# A new language: `.venv/bin/pybabel init -i idp/translations/messages.pot -d idp/translations -l xx`,
# then add it to SUPPORTED_LOCALES in idp/extensions.py.
set -euo pipefail

cd "$(dirname "$0")/.."
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
PYTHON=${PYTHON:-.venv/bin/python}
DIR=idp/translations
POT=$DIR/messages.pot

extract() {
  "$PYBABEL" -q extract -F babel.cfg -k _l -k lazy_gettext -k plural_text:1,2 --add-location=file --sort-output \
    --project=idp --copyright-holder="idp contributors" -c "TRANSLATORS:" -o "$1" .
}

if [[ "${1:-}" == "--check" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  extract "$tmp/messages.pot"
  # Messages only: a string that moved to another file is not worth failing on.
  "$PYTHON" - "$tmp/messages.pot" "$DIR"/*/LC_MESSAGES/messages.po <<'PY'
import sys
from babel.messages.pofile import read_po


def load(path):
    with open(path, "rb") as handle:
        return read_po(handle)


source = {m.id for m in load(sys.argv[1]) if m.id}
failed = False
for path in sys.argv[2:]:
    catalog = load(path)
    ids = {m.id for m in catalog if m.id}
    problems = [f"not in the catalogue: {m}" for m in sorted(map(repr, source - ids))]
    problems += [f"no longer in the source: {m}" for m in sorted(map(repr, ids - source))]
    for m in catalog:
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if m.id and not all(strings):
            problems.append(f"untranslated: {m.id!r}")
        elif m.id and m.fuzzy:
            problems.append(f"fuzzy: {m.id!r}")
    if catalog.fuzzy:
        problems.append("the header is marked fuzzy")
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    failed = failed or bool(problems)
if failed:
    print("run scripts/translations.sh, translate, then commit messages.pot, the .po and the .mo", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
  exit
fi

extract "$POT"
for po in "$DIR"/*/LC_MESSAGES/messages.po; do
  lang=$(basename "$(dirname "$(dirname "$po")")")
  "$PYBABEL" -q update -i "$POT" -o "$po" -l "$lang" --ignore-obsolete --ignore-pot-creation-date --no-fuzzy-matching
done
"$PYBABEL" compile -d "$DIR" --statistics
