"""Single-use recovery codes: the "I can't use my usual method" factor."""
