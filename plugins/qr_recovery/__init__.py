"""Recovery QR codes issued by an admin (docs/recovery.md): let a user back in, or give a new device push."""
