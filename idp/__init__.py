"""An OpenID Connect provider with enforced, governable second factors."""

__version__ = "0.1.0"
