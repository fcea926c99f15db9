"""Commands that show a secret once write it before they commit: with a stdout that cannot take it
(`>/dev/full`, `>&-`) they roll back and say so in one line, and the database is as it was. The
console script runs as a subprocess with the real stream (click's CliRunner cannot fail a write)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from sqlalchemy import func, select

from fixtures.cli import Result, clean_env, idp_command, ok, refused

from idp.models import AuditEvent, Client, Credential, FactorChallenge

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def run_unwritable(url: str, *args: str, stdout="full", stderr_full: bool = False) -> Result:
    """`idp ARGS` with stdout on /dev/full (every write fails: ENOSPC), or closed (`stdout=None`).
    With `stderr_full` stdout is a pipe and stderr the full device."""
    with open("/dev/full", "w") as full:
        out = full if stdout == "full" and not stderr_full else (subprocess.PIPE if stderr_full else None)
        completed = subprocess.run(idp_command() + list(args), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=full if stderr_full else subprocess.PIPE, text=True,
                                   env=clean_env(url), timeout=60,
                                   # stdout=None below closes fd 1 in the child: `>&-`
                                   preexec_fn=(lambda: os.close(1)) if stdout is None else None)
    return Result(tuple(args), completed.returncode, completed.stdout or "", completed.stderr or "")


def counts(db) -> dict:
    with db.engine.connect() as conn:
        return {model.__tablename__: conn.scalar(select(func.count()).select_from(model))
                for model in (Client, AuditEvent, Credential, FactorChallenge)}


@pytest.fixture
def carol(idp, url):
    ok(idp("org", "add", "Acme", database_url=url))
    ok(idp("user", "add", "--org", "Acme", "--email", "carol@example.com", "--password-stdin",
           database_url=url, input="correct horse battery\n"))
    return "carol@example.com"


@pytest.mark.parametrize("stdout", ["full", None], ids=["dev-full", "closed"])
def test_client_add_registers_nothing_when_its_secret_cannot_be_shown(url, db, stdout):
    before = counts(db)
    refused(run_unwritable(url, "client", "add", "--name", "App", "--redirect-uri", "https://app.example/cb",
                           stdout=stdout), "cannot write the output", "no client was registered")
    assert counts(db) == before


def test_rotate_secret_keeps_the_old_secret_when_the_new_one_cannot_be_shown(idp, url, db):
    added = json.loads(ok(idp("client", "add", "--name", "App", "--redirect-uri", "https://app.example/cb",
                              database_url=url)).stdout)
    [before] = db.rows(Client, Client.client_id == added["client_id"])
    events = counts(db)
    refused(run_unwritable(url, "client", "rotate-secret", added["client_id"]),
            "cannot write the output", "the secret was not rotated")
    [after] = db.rows(Client, Client.client_id == added["client_id"])
    assert after["secret_hash"] == before["secret_hash"] and counts(db) == events


@pytest.mark.parametrize("extra, stderr_full", [((), False), (("--json",), False), ((), True)],
                         ids=["text", "json", "secret-line-on-full-stderr"])
def test_recovery_qr_issue_issues_nothing_when_the_code_cannot_be_shown(url, db, carol, extra, stderr_full):
    before = counts(db)
    result = run_unwritable(url, "recovery-qr", "issue", "--user", carol, *extra, stderr_full=stderr_full)
    if stderr_full:  # the one-line error itself cannot be shown: the exit status says it
        assert result.returncode != 0, result
    else:
        refused(result, "cannot write the output", "nothing was issued")
    assert counts(db) == before


def test_push_activate_issues_nothing_when_the_code_cannot_be_shown(url, db, carol):
    before = counts(db)
    refused(run_unwritable(url, "factor", "push", "activate", "--user", carol),
            "cannot write the output", "nothing was issued")
    assert counts(db) == before
