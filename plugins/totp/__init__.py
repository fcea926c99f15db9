"""TOTP (RFC 6238) authenticator apps: `factor.py` is the plugin, `otp.py` the arithmetic."""
