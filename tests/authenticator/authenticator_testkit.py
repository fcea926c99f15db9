"""Shared helpers for the companion app's tests: constants and a CLI driver.

The app runs as a real subprocess (``python -m authenticator``) so the tests
see exactly what a script would: stdout, one line on stderr, the exit status.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FIXED_TIME = 1_700_000_000
PASSPHRASE = "correct horse battery staple"
RECOVERY_SECRET = "recovery words kept on paper"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TOTP_URI = f"otpauth://totp/ACME:alice%40example.com?secret={SECRET}&issuer=ACME&digits=6&period=30"


class App:
    """One app home, driven through the real command line."""

    def __init__(self, home: Path):
        self.home = home

    def run(self, *args, env=None, stdin=None, pass_home=True) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        return subprocess.run(
            [sys.executable, "-m", "authenticator", *(["--home", str(self.home)] if pass_home else []), *args],
            capture_output=True, text=True, env=full_env, cwd=REPO, input=stdin, timeout=60,
        )

    def ok(self, *args, **kwargs) -> str:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def files(self) -> dict:
        """Every file under the home with its bytes: to prove a failure changed nothing."""
        if not self.home.exists():
            return {}
        return {p.relative_to(self.home): p.read_bytes() for p in sorted(self.home.rglob("*")) if p.is_file()}


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Assert a user error looks like one: non-zero, one stderr line, no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
