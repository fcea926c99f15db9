"""`idp factor push activate` as an operator runs it: a real subprocess on a real database."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit


def test_activate_prints_the_uri_and_refuses_bad_input_in_one_line(idp, migrated_database_url):
    assert idp("org", "add", "Acme", database_url=migrated_database_url).returncode == 0
    added = idp("user", "add", "--org", "Acme", "--email", "ops@acme.test", "--password-stdin",
                input="correct horse battery\n", database_url=migrated_database_url)
    assert added.returncode == 0, added
    result = idp("factor", "push", "activate", "--user", "ops@acme.test", "--expires-in", "2h", "--json",
                 database_url=migrated_database_url)
    assert result.returncode == 0, result
    data = json.loads(result.stdout)
    query = parse_qs(urlsplit(data["activation_uri"]).query)
    assert query["v"] == ["1"] and query["user"] == ["ops@acme.test"] and query["code"][0]
    assert query["endpoint"][0].endswith("/factors/push/v1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["expires_at"])  # as recovery-qr prints it
    # The user holds no recovery codes: the phone, once registered, brings a set shown at their next
    # sign-in (never printed here).
    assert data["recovery_codes_at_next_sign_in"] is True
    plain = idp("factor", "push", "activate", "--user", "ops@acme.test", database_url=migrated_database_url)
    assert plain.returncode == 0 and plain.stdout.strip().startswith("idp-push://activate?v=1&")
    assert len(plain.stdout.splitlines()) == 1 and plain.stderr_lines == [
        "ops@acme.test holds no recovery codes: they will be shown a new set once, at their next sign-in after the "
        "phone is registered"], plain
    for args in (("--user", "nobody@acme.test"), ("--user", "ops@acme.test", "--expires-in", "forever")):
        bad = idp("factor", "push", "activate", *args, database_url=migrated_database_url)
        assert bad.returncode != 0 and len(bad.stderr_lines) == 1 and "Traceback" not in bad.stderr, bad
    too_long = idp("factor", "push", "activate", "--user", "ops@acme.test", "--expires-in", "8d",
                   database_url=migrated_database_url)
    assert too_long.returncode != 0 and "must be between 1m and 7d" in too_long.stderr, too_long
    assert idp("user", "disable", "--email", "ops@acme.test", database_url=migrated_database_url).returncode == 0
    disabled = idp("factor", "push", "activate", "--user", "ops@acme.test", database_url=migrated_database_url)
    assert disabled.returncode != 0 and disabled.stderr_lines == [
        "idp: error: ops@acme.test is disabled: enable the account first (idp user enable)"], disabled


def test_activate_writes_the_png_for_its_owner_only(idp, migrated_database_url, tmp_path):
    """The QR code holds a live activation code: 0600, even over an existing world-readable file."""
    import os
    import stat

    assert idp("org", "add", "Acme", database_url=migrated_database_url).returncode == 0
    assert idp("user", "add", "--org", "Acme", "--email", "ops@acme.test", "--password-stdin",
               input="correct horse battery\n", database_url=migrated_database_url).returncode == 0
    png = tmp_path / "activate.png"
    png.write_bytes(b"old")
    png.chmod(0o644)
    result = idp("factor", "push", "activate", "--user", "ops@acme.test", "--png", str(png),
                 database_url=migrated_database_url)
    assert result.returncode == 0, result
    assert stat.S_IMODE(os.stat(png).st_mode) == 0o600 and png.read_bytes().startswith(b"\x89PNG")


def test_activate_refuses_a_user_whose_organization_does_not_accept_push(idp, migrated_database_url):
    """A code the phone could not register with (the organization's allowed factors leave push
    out): refused in one line, nothing issued."""
    assert idp("org", "add", "Acme", database_url=migrated_database_url).returncode == 0
    assert idp("user", "add", "--org", "Acme", "--email", "ops@acme.test", "--password-stdin",
               input="correct horse battery\n", database_url=migrated_database_url).returncode == 0
    assert idp("policy", "factors", "--org", "Acme", "totp", database_url=migrated_database_url).returncode == 0
    refused = idp("factor", "push", "activate", "--user", "ops@acme.test", database_url=migrated_database_url)
    assert refused.returncode != 0 and refused.stdout == "" and refused.stderr_lines == [
        "idp: error: the organization of ops@acme.test does not accept push (idp policy factors)"], refused
