"""The signed-in user's own security page."""
