"""A native app's private-use URI scheme redirect URI (RFC 8252 7.1): `com.example.app:/oauth2redirect`.

The operating system hands a URI of the app's own scheme to the app that claimed it, so a mobile
app can receive the authorization response without a loopback server or a claimed https link.
What a registration may hold, and why:

- a public client's only (idp.clients): a confidential client runs on a server, reachable at an
  https URI; an app on a device keeps no secret, so it is public anyway;
- a reverse domain name: at least two DNS labels joined by periods, the first (the top-level
  domain) letters only (RFC 8252 7.1: "a URI scheme based on a domain name under their control,
  expressed in reverse order"); this also keeps out the schemes browsers handle themselves and
  most an operating system does (`x-apple.systempreferences`: its first label has a hyphen); the
  best known are named in the refusal all the same (SPECIAL_SCHEMES). Not all: Windows opens
  `microsoft.windows.camera:` in its own app. Such a registration (an operator's, never a
  request's) sends the code to that app, which does nothing with it, and to no one else;
- in lower case, as written: matching is exact (RFC 9700 2.1) and Android matches a scheme case
  sensitively, so a scheme written otherwise would register a URI the app never receives;
  lower case is RFC 3986 3.1's canonical form, and the refusal says so rather than changing it;
- `scheme:/path`, one slash, no authority (RFC 8252 7.1: "as there is no naming authority for
  private-use URI scheme redirects, only a single slash"), an optional query, no fragment (RFC
  6749 3.1.2), and only characters a URI holds unescaped (RFC 3986), so that the URI goes into a
  Location header and the audit log as it is.

Such a redirect URI proves nothing about who receives the code (any app may claim the scheme):
idp.login.pipeline asks for consent at every login of a public client whose redirect URI is not
https, which covers it, and PKCE is required of every public client.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

# Schemes a browser or an operating system acts on itself: never an app's (these hold no period,
# so the reverse-domain rule refuses them anyway; named here for a refusal that says why). Not
# every such scheme: an operating system's may be a reverse domain name (module docstring).
SPECIAL_SCHEMES = frozenset({
    "http", "https", "ws", "wss", "ftp", "file", "data", "javascript", "vbscript", "blob", "about", "filesystem",
    "view-source", "mailto", "tel", "sms", "intent", "android-app", "content", "chrome", "chrome-extension",
    "edge", "moz-extension", "resource", "jar", "urn", "ms-settings", "itms-services", "ms-appx", "ms-appx-web",
})
EXAMPLE = "com.example.app:/callback"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986 3.1
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TOP_LEVEL_LABEL = re.compile(r"[a-z]{2,63}")
# path-absolute [ "?" query ]: unreserved, sub-delims, ":", "@", "/", "?" and percent-escapes.
_PATH_AND_QUERY = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")


def is_private_use(uri: str | None) -> bool:
    """Whether a registered redirect URI is a private-use one (registration lets in http(s) URIs
    and these only)."""
    return bool(uri) and urlsplit(uri).scheme not in ("http", "https")


def looks_like_one(uri: str) -> bool:
    """Whether `uri` begins with a scheme other than http(s) (what the operator meant to be a
    private-use URI, for a refusal that speaks of those rules)."""
    scheme, colon, _rest = uri.partition(":")
    return bool(colon) and bool(_SCHEME.fullmatch(scheme)) and scheme.lower() not in ("http", "https")


def problem(uri: str) -> str | None:
    """What makes `uri` (printable text without spaces: idp.clients checked it) no private-use
    redirect URI a native app may register, for people; None when it is one."""
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return f"not a URI (a private-use one looks like {EXAMPLE})"
    if scheme.lower() in SPECIAL_SCHEMES:
        return f"{scheme.lower()}: is a scheme browsers handle themselves, not an app's private-use one"
    if scheme != scheme.lower():
        return f"write the scheme in lower case ({scheme.lower()}:): it is matched exactly, as the app sends it"
    labels = scheme.split(".")
    if len(labels) < 2 or not _TOP_LEVEL_LABEL.fullmatch(labels[0]) \
            or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return ("a private-use scheme is a domain name of the app's, reversed, such as com.example.app "
                "(RFC 8252 7.1)")
    if rest.startswith("//"):
        return f"a private-use URI has no authority: one slash after the scheme, as in {EXAMPLE} (RFC 8252 7.1)"
    if not rest.startswith("/"):
        return f"the path must begin with a slash, as in {EXAMPLE} (RFC 8252 7.1)"
    if "#" in rest:
        return "must not contain a fragment"
    if not _PATH_AND_QUERY.fullmatch(rest):
        return "holds characters a URI cannot hold unescaped"
    return None
