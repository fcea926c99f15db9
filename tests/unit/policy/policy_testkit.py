"""Shared values for the policy tests: a fixed clock."""
from datetime import datetime

NOW = datetime(2026, 6, 15, 9, 30)
TODAY = NOW.date()
