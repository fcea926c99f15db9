"""idp-authenticator: the companion app that plays the user's phone.

It holds TOTP secrets (and, later, device-bound push keys) in an encrypted
local store, and backs its accounts up encrypted so they can be restored on a
new device. It speaks only documented formats and the public HTTP protocol, so
it imports nothing from ``idp`` or the server's plugins: if it ever needs to,
the protocol is not documented well enough.
"""
