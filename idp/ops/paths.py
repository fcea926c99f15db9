"""The path the access log writes: the request's URL with the values that stand for secrets replaced.

Several URLs carry a bearer-like value in their path: a login transaction's handle
(`/login/<handle>`), a pending enrolment's id, a push activation or challenge id. Whoever reads
the logs should not read those. The access line (and the error lines that name a request)
therefore writes the path rebuilt from the URL rule that matched:

- values of `int`, `float` and `path` converters are written as they are (row ids such as the
  admin pages' `/admin/users/7`, static file names), and so are the arguments named in
  `PUBLIC_ARGUMENTS` (a factor's name, in `/login/<handle>/factor/<name>`): they are not
  secrets and say what was asked;
- every other value (the default `string` converter) is replaced by its pseudonym: 22 base64url
  characters of a keyed BLAKE2b of the value, under a key derived from the server's secret key.
  A new route's string argument is thus hidden unless someone decides otherwise here.

The same value always gets the same pseudonym, in every worker and across restarts with the same
secret key, so the requests of one login can still be followed (bench/run.py tells a login's
password POST from its code POSTs that way); a pseudonym can be neither turned back into the value
nor used in its place.

A path no rule matched (a 404; a method the rule does not take, such as a GET of a POST-only
`/login/<handle>/cancel`) is written with every segment that holds what looks like a random id
(16 or more URL-safe characters among which a digit or a capital letter) replaced the same way;
words joined by hyphens, as in `/.well-known/openid-configuration`, stay readable.
"""
from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Mapping

KEPT_CONVERTERS = frozenset({"int", "float", "path"})
PUBLIC_ARGUMENTS = frozenset({"name"})  # factor names: totp, webauthn, ...
# `<name>`, `<converter:name>`, `<converter(arguments):name>` in a werkzeug rule.
_PLACEHOLDER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_ID_RUN = re.compile(r"[A-Za-z0-9_-]{16,}")
_SEGMENT = re.compile(r"[^/]+")

# A rule's template: its literal text and, between, (argument name, written as it is?);
# empty for a rule without arguments.
Template = tuple[object, ...]


class PathRedactor:
    """Rebuilds logged paths; one per app (the key comes from its secret key)."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.blake2b(secret_key.encode("utf-8", "surrogatepass"), digest_size=32,
                                    person=b"idp.access-path").digest()
        self._templates: dict[str, Template] = {}

    def pseudonym(self, value: str) -> str:
        digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def path(self, rule: str | None, view_args: Mapping[str, Any] | None, raw_path: str) -> str:
        """The path to log for a request: rebuilt from `rule` (the matched rule's text) and the
        values it matched, or `raw_path` with its id-like segments replaced when no rule matched."""
        if rule is None:
            return self.unmatched_path(raw_path)
        template = self._templates.get(rule)
        if template is None:
            template = self._templates[rule] = _template(rule)
        if not template:  # a fixed path: nothing to replace
            return rule
        values = view_args or {}
        parts = []
        for part in template:
            if isinstance(part, str):
                parts.append(part)
                continue
            name, kept = part
            if name not in values:  # not what the rule matched (should not happen): judge the raw path
                return self.unmatched_path(raw_path)
            parts.append(str(values[name]) if kept else self.pseudonym(str(values[name])))
        return "".join(parts)

    def unmatched_path(self, raw_path: str) -> str:
        return _SEGMENT.sub(lambda m: self.pseudonym(m.group()) if _holds_an_id(m.group()) else m.group(), raw_path)


def _template(rule: str) -> Template:
    parts: list[object] = []
    end = 0
    for match in _PLACEHOLDER.finditer(rule):
        parts.append(rule[end:match.start()])
        converter, name = match.group(1) or "default", match.group(2)
        parts.append((name, converter in KEPT_CONVERTERS or name in PUBLIC_ARGUMENTS))
        end = match.end()
    if not parts:
        return ()
    parts.append(rule[end:])
    return tuple(p for p in parts if p != "")


def _holds_an_id(segment: str) -> bool:
    """Random ids mix cases or digits; long slugs (`openid-configuration`) are lowercase words."""
    return any(run != run.lower() or any(c.isdigit() for c in run) for run in _ID_RUN.findall(segment))
