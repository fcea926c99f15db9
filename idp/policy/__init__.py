"""Who must use a second factor, and where each user stands."""
