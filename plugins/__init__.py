"""First-party second factors, imported as `idp_plugins` (see setup.py)."""
