"""OpenID Connect: Authlib wiring only (STYLE.md section 7)."""
