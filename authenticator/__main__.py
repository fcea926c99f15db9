"""Allow ``python -m authenticator`` (used by tests before the package is installed)."""

import sys

from authenticator.cli import main

sys.exit(main())
