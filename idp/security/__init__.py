"""Cryptographic and abuse-resistance building blocks. No models, no views."""
