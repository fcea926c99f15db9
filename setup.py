"""Package discovery that pyproject.toml alone cannot express.

The first-party factors live in the `plugins/` folder (DESIGN.md) but are imported
as `idp_plugins`, so that they cannot collide with another distribution's
top-level `plugins` package. setuptools' declarative `packages.find` cannot
rename a folder, so the package list is computed here; everything else is in
pyproject.toml.
"""
from setuptools import find_packages, setup

packages = find_packages(".", include=["idp", "idp.*", "authenticator", "authenticator.*"])
packages += ["idp_plugins"] + [f"idp_plugins.{name}" for name in find_packages("plugins")]

setup(packages=packages)
