"""The signed-in user's own security page: sign-in methods (add, rename, remove), recovery codes,
the password, where the account is signed in, the applications with access, recent activity and
the language of the pages."""
