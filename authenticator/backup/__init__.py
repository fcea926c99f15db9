"""Encrypted backup and restore of the device's accounts (issue 7).

``format`` seals and opens the versioned binary container, ``payload`` says
what goes inside (and what never does), ``storage`` is where it goes, and
``service`` ties them to the local store. The byte layout is documented in
``docs/backup-format.md`` so another platform can restore it.
"""
