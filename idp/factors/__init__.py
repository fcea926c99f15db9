"""The factor plugin contract, registry and credential store."""
