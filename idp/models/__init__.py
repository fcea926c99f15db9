"""SQLAlchemy models. Import them from here: `from idp.models import User`."""
from idp.db import Base
from idp.models.audit import AuditEvent
from idp.models.directory import Organization, User
from idp.models.factors import Credential, FactorChallenge
from idp.models.login import FailureCounter, LoginTransaction, UserSession
from idp.models.oauth import (AuthorizationCode, Client, ClientAssertion, ConsentGrant, DeviceAuthorization,
                              DPoPProof, PushedRequest, SessionClient, SigningKey, Token)
from idp.models.password_reset import PasswordReset

__all__ = [
    "Base", "AuditEvent", "Organization", "User", "Credential", "FactorChallenge", "FailureCounter",
    "LoginTransaction", "UserSession", "AuthorizationCode", "Client", "ClientAssertion", "ConsentGrant",
    "DeviceAuthorization", "DPoPProof", "PushedRequest", "SessionClient", "SigningKey", "Token",
    "PasswordReset",
]
