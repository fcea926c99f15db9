"""Admin views, confined to the admin's own organization: the users list with its 2FA shields, a
user's page (2FA requirement and exemption, factors, recovery QR codes, password, role, disabling,
sessions and applications), new users, Account > Security (the organization's policy and security
alerts) and the audit log. Security changes want the admin's recent full login (`login.recent_login`)
and each writes its audit event."""
