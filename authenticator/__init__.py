"""idp-authenticator: the companion app that plays the user's phone.

It holds TOTP secrets and device-bound push keys in an encrypted local store,
answers push logins with number matching (docs/push-protocol.md), and backs its
accounts up encrypted so they can be restored on a new device (docs/backup-format.md),
where each push account gets a key of its own through `recover` (docs/recovery.md):
push keys never leave the device, so a backup holds none. It speaks only documented formats and the public HTTP protocol, so
it imports nothing from ``idp`` or the server's plugins: if it ever needs to,
the protocol is not documented well enough.
"""
