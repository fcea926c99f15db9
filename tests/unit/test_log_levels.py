"""server.log_level = DEBUG lowers every logger but Authlib's, which logs whole token responses."""
from __future__ import annotations

import io
import logging
import sys

from idp.ops import logs


def test_debug_does_not_let_authlib_log_the_tokens_it_issues():
    root = logging.getLogger()
    before = root.level
    stream = io.StringIO()
    handler = logs.configure(level="DEBUG", json_lines=True, stream=stream)
    try:
        assert root.level == logging.DEBUG
        logging.getLogger("authlib.oauth2.rfc6749.grants.refresh_token").debug("Issue token %r", {"access_token": "x"})
        logging.getLogger("idp.something").debug("kept")
        assert "Issue token" not in stream.getvalue() and "kept" in stream.getvalue()
    finally:
        logs.configure(level=logging.getLevelName(before), json_lines=True)
        handler.setStream(sys.stderr)
