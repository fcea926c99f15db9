"""Shared helpers for the companion app's tests: constants and a CLI driver.

The app runs as a real subprocess (``python -m authenticator``) so the tests
see exactly what a script would: stdout, one line on stderr, the exit status.
"""

import contextlib
import os
import re
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

    def run(self, *args, env=None, stdin=None, pass_home=True, stdin_file=None, close_stdin=False,
            memory_limit_mib=None, prelude=None, keep_cost_warning=False) -> subprocess.CompletedProcess:
        """``stdin``: text piped in (default: an empty pipe, never the terminal pytest may run on,
        where a missing secret would be asked for); ``stdin_file``: a file's raw bytes instead;
        ``close_stdin``: run with no stdin at all, as ``<&-`` does; ``memory_limit_mib``: the address
        space the process may use (a small phone); ``prelude``: Python run in the app's process before
        the command (to make a disk fail, or the process die, at a chosen point).

        The app warns on stderr whenever it uses the lowered scrypt cost the fixtures set: that line is
        taken out of ``stderr`` (every test would step over it otherwise) unless ``keep_cost_warning``."""
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        entry = ["-c", f"{prelude}\n{_MAIN}"] if prelude else ["-m", "authenticator"]
        command = [sys.executable, *entry, *(["--home", str(self.home)] if pass_home else []), *args]
        with contextlib.ExitStack() as stack:
            feed = {"input": stdin or ""}
            if stdin_file is not None:
                feed = {"stdin": stack.enter_context(open(stdin_file, "rb"))}
            result = subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=60,
                                    preexec_fn=_limits(close_stdin, memory_limit_mib), **feed)
        if not keep_cost_warning:
            result.stderr = COST_WARNING.sub("", result.stderr)
        return result

    def ok(self, *args, **kwargs) -> str:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def files(self) -> dict:
        """Every file under the home with its bytes: to prove a failure changed nothing."""
        if not self.home.exists():
            return {}
        return {p.relative_to(self.home): p.read_bytes() for p in sorted(self.home.rglob("*")) if p.is_file()}


# authenticator/crypto.py's warning about IDP_AUTHENTICATOR_SCRYPT_N (conftest.py sets it to 16).
COST_WARNING = re.compile(r"^idp-authenticator: warning: IDP_AUTHENTICATOR_SCRYPT_N=\S* sets the scrypt cost .*\n",
                          re.MULTILINE)
_MAIN = "import sys\nfrom authenticator.cli import main\nsys.exit(main(sys.argv[1:]))"


def _limits(close_stdin: bool, memory_limit_mib):
    if not close_stdin and memory_limit_mib is None:
        return None

    def apply() -> None:
        if close_stdin:
            os.close(0)
        if memory_limit_mib is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_mib << 20, memory_limit_mib << 20))
    return apply


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Assert a user error looks like one: non-zero, one stderr line, no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
