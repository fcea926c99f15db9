"""A third-party plugin's command, `idp factor NAME ...`, as its author writes it (the docstring
of `Factor.cli_command`: `current_registry().get(cls.name)`), from a package installed beside
the provider with an entry point. Disabled by `factors.disabled`, the command still exists
(the command tree is built before any settings are read) and says why it cannot run, in one
line: it was a traceback (FactorNotFound)."""
from __future__ import annotations

import os
import textwrap

import pytest

from fixtures.cli import refused

FACTOR_PY = '''
import click

from idp.factors import Factor, FactorKind, Rejected, Step
from idp.factors.cli import with_app_context


class ParrotFactor(Factor):
    name = "parrot"
    label = "Parrot word"
    kind = FactorKind.SECOND_FACTOR
    amr = ("kba",)

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        return Rejected("invalid_code")

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={})

    def verify(self, user, state, response, ctx):
        return Rejected("invalid_code")

    @classmethod
    def cli_command(cls):
        @click.command(name=cls.name)
        @with_app_context
        def status():
            """Whether the parrot listens."""
            from idp.factors.registry import current_registry

            factor = current_registry().get(cls.name)
            click.echo(f"{factor.label} is listening")

        return status
'''


@pytest.fixture
def plugin_env(tmp_path):
    """PYTHONPATH with a plugin distribution on it: its package and its entry point."""
    site = tmp_path / "site"
    (site / "acme_parrot").mkdir(parents=True)
    (site / "acme_parrot" / "__init__.py").write_text("")
    (site / "acme_parrot" / "factor.py").write_text(textwrap.dedent(FACTOR_PY))
    info = site / "acme_parrot-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-parrot\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[idp.factors]\nparrot = acme_parrot.factor:ParrotFactor\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def test_a_plugins_command_runs_and_says_when_the_factor_is_disabled(idp, sqlite_url, plugin_env):
    from fixtures.database import initialise

    initialise(sqlite_url)
    ran = idp("factor", "parrot", database_url=sqlite_url, env=plugin_env, fresh=True)
    assert (ran.returncode, ran.stdout) == (0, "Parrot word is listening\n"), ran
    disabled = idp("factor", "parrot", database_url=sqlite_url, fresh=True,
                   env=dict(plugin_env, IDP_FACTORS__DISABLED="parrot"))
    refused(disabled, "idp: error: no enabled factor named 'parrot'", "factors.disabled")
