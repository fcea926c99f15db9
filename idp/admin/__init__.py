"""Admin views: users and their 2FA, account security, audit log."""
