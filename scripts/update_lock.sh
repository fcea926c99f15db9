#!/usr/bin/env bash
# Re-resolve requirements.lock: every package `pip install -e '.[test]'` needs, pinned.
#
#   scripts/update_lock.sh            keep today's pins where they still satisfy pyproject.toml
#   scripts/update_lock.sh --upgrade  take the newest releases allowed by pyproject.toml
#
# Resolution runs in a throw-away venv with `pip install --dry-run --report`, so
# nothing is installed and the project's own .venv is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --upgrade pip
constraints=()
if [[ "${1:-}" != "--upgrade" && -f requirements.lock ]]; then
  grep -E '^[A-Za-z0-9]' requirements.lock > "$scratch/current.txt"
  constraints=(-c "$scratch/current.txt")
fi
"$scratch/venv/bin/pip" install --quiet --dry-run --ignore-installed --report "$scratch/report.json" \
  "${constraints[@]}" -e '.[test]'
{
  echo "# Pinned versions of everything 'pip install -e .[test]' installs (runtime and test extras)."
  echo "# Used as constraints: pip install -c requirements.lock -e '.[test]' (make install)."
  echo "# Regenerate with scripts/update_lock.sh [--upgrade] after changing dependencies in pyproject.toml."
  python3 - "$scratch/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"]
              if i["metadata"]["name"].lower() != "idp")
for name, version in sorted(pins, key=lambda p: p[0].lower()):
    print(f"{name}=={version}")
PY
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages"
