"""WebAuthn security keys and passkeys (py_webauthn)."""
