"""The floor of a second-factor code POST on this stack: what the pieces issue 4 asks for cost
with nothing of ours around them.

The app below is the smallest one that does what the provider's right-code POST must do, the
way it must do it, and nothing else: Flask's signed-cookie session, Flask-WTF's CSRF check,
Flask-Limiter's per-address count of login posts (in memory), the TOTP secret opened with
AES-GCM and checked by pyotp with one step of drift, and the same statements on a SQLite file
(WAL) through the bare `sqlite3` module:

- the login's row read by the hash of its handle, with the user's TOTP credential;
- BEGIN IMMEDIATE; the user's row and the login's state read together (the hold);
- the failure counters of the user and the address;
- the code spent: `UPDATE credentials ... WHERE counter < step` (the replay guard);
- the user's last login stamped; the login moved to `done`;
- the new session's row, two audit events, the authorization code's row; COMMIT;

then a new session cookie (rotated at sign-in) and the redirect to the client with the code,
its state and the issuer. No SQLAlchemy, no Authlib, no policy, no plugins, no templates, no
logging, no metrics. Whatever the provider's code POST costs beyond this app is what its own
design costs; this app's own figure is what no design on these libraries can go below.

`bench/request_cpu.py KIND --floor` posts one of its codes after each of the provider's TOTP
logins, in the same process (both under the same load), and prints them beside the provider's
code POST ("floor POST /login/<id> (code)").
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, disabled BOOLEAN NOT NULL DEFAULT 0,
                    last_login_at TEXT);
CREATE TABLE credentials (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
                          factor TEXT NOT NULL, nonce BLOB NOT NULL, secret BLOB NOT NULL,
                          counter INTEGER NOT NULL DEFAULT 0, last_used_at TEXT, revoked_at TEXT);
CREATE TABLE login_transactions (id TEXT PRIMARY KEY, browser_binding TEXT NOT NULL, state TEXT NOT NULL,
                                 version INTEGER NOT NULL, authz_request TEXT NOT NULL,
                                 user_id INTEGER REFERENCES users(id), steps_done TEXT NOT NULL,
                                 expires_at TEXT NOT NULL);
CREATE TABLE failure_counters (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, updated_at TEXT NOT NULL,
                               locked_until TEXT);
CREATE TABLE user_sessions (id TEXT PRIMARY KEY, sid TEXT NOT NULL, user_id INTEGER NOT NULL REFERENCES users(id),
                            auth_time INTEGER NOT NULL, amr TEXT NOT NULL, created_at TEXT NOT NULL,
                            expires_at TEXT NOT NULL, user_agent TEXT, ip TEXT);
CREATE TABLE audit_events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, org_id INTEGER, event TEXT NOT NULL,
                           actor_id INTEGER, actor TEXT, subject_id INTEGER, ip TEXT, user_agent TEXT,
                           details TEXT NOT NULL);
CREATE TABLE authorization_codes (id INTEGER PRIMARY KEY, code_hash TEXT NOT NULL UNIQUE, client_id TEXT NOT NULL,
                                  user_id INTEGER NOT NULL REFERENCES users(id), redirect_uri TEXT NOT NULL,
                                  scope TEXT NOT NULL, nonce TEXT, code_challenge TEXT, auth_time INTEGER NOT NULL,
                                  amr TEXT NOT NULL, session_id TEXT, expires_at TEXT NOT NULL,
                                  created_at TEXT NOT NULL);
"""
ISSUER = "http://127.0.0.1:3199"
REDIRECT_URI = "http://127.0.0.1:3200/callback"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


class Floor:
    """The floor app on its own SQLite file, and `logins` logins waiting at their code page."""

    def __init__(self, directory: Path, logins: int) -> None:
        import pyotp
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.path = directory / "code-post-floor.sqlite"
        for leftover in directory.glob("code-post-floor.sqlite*"):
            leftover.unlink()
        self.key = AESGCM(AESGCM.generate_key(bit_length=256))
        self.pending: list[tuple[str, str]] = []  # (handle, TOTP secret) of each login at its code page
        setup = sqlite3.connect(self.path)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.executescript(SCHEMA)
        for i in range(logins):
            secret = pyotp.random_base32()
            nonce = os.urandom(12)
            user_id = setup.execute("INSERT INTO users (email) VALUES (?)", (f"floor{i}@bench.test",)).lastrowid
            setup.execute("INSERT INTO credentials (user_id, factor, nonce, secret) VALUES (?, 'totp', ?, ?)",
                          (user_id, nonce, self.key.encrypt(nonce, secret.encode(), str(user_id).encode())))
            handle = secrets.token_urlsafe(24)
            authz = {"params": {"client_id": "floor-client", "redirect_uri": REDIRECT_URI, "scope": "openid email",
                                "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
                                "code_challenge": secrets.token_urlsafe(32)}}
            steps = [{"method": "password", "amr": ["pwd"], "at": int(time.time())}]
            setup.execute("INSERT INTO login_transactions VALUES (?, ?, 'second_factor', 2, ?, ?, ?, ?)",
                          (_sha256(handle), "binding", json.dumps(authz), user_id, json.dumps(steps), "9999-12-31"))
            self.pending.append((handle, secret))
        setup.commit()
        setup.close()
        self.app = self._app()

    def _app(self):
        import pyotp
        from flask import Flask, abort, redirect, request, session
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address
        from flask_wtf.csrf import CSRFProtect, generate_csrf

        app = Flask("code_post_floor")
        app.config.update(SECRET_KEY=secrets.token_urlsafe(32), SESSION_COOKIE_HTTPONLY=True)
        CSRFProtect(app)
        limiter = Limiter(get_remote_address, app=app, storage_uri="memory://")
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        key = self.key

        @app.get("/login/<handle>")
        def page(handle):  # (not measured: it gives the browser its session and CSRF token)
            session["binding"] = "binding"
            return generate_csrf()

        @app.post("/login/<handle>")
        @limiter.limit("100000 per minute")
        def submit_code(handle):
            # The login's row with its user's live TOTP credential, in one statement (as the provider's).
            row = connection.execute(
                "SELECT t.state, t.version, t.user_id, t.authz_request, t.steps_done, c.id, c.nonce, c.secret "
                "FROM login_transactions t LEFT JOIN credentials c ON c.user_id = t.user_id "
                "AND c.factor = 'totp' AND c.revoked_at IS NULL "
                "WHERE t.id = ? AND t.browser_binding = ? AND t.expires_at > ?",
                (_sha256(handle), session.get("binding"), _now())).fetchone()
            if row is None or row[0] != "second_factor" or str(row[1]) != request.form.get("version"):
                abort(404)
            _state, version, user_id, authz, steps, credential_id, nonce, sealed = row
            connection.execute("BEGIN IMMEDIATE")
            try:
                held = connection.execute(
                    "SELECT t.state, t.version, u.disabled FROM users u JOIN login_transactions t "
                    "ON t.user_id = u.id WHERE u.id = ? AND t.id = ?", (user_id, _sha256(handle))).fetchone()
                if held is None or held[2] or held[1] != version:
                    abort(409)
                counters = connection.execute(
                    "SELECT key, failures, locked_until FROM failure_counters WHERE key IN (?, ?)",
                    (f"factor:user:{user_id}", f"factor:ip:{request.remote_addr}")).fetchall()
                if any(locked for _key, _failures, locked in counters):
                    abort(429)
                totp = pyotp.TOTP(key.decrypt(nonce, sealed, str(user_id).encode()).decode())
                now = time.time()
                current, posted = totp.timecode(now), request.form.get("code", "")
                step = next((current + drift for drift in (0, -1, 1)
                             if secrets.compare_digest(totp.generate_otp(current + drift), posted)), None)
                if step is None or connection.execute(
                        "UPDATE credentials SET counter = ?, last_used_at = ? WHERE id = ? AND counter < ? "
                        "RETURNING id", (step, _now(), credential_id, step)).fetchone() is None:
                    abort(401)
                if connection.execute("UPDATE users SET last_login_at = ? WHERE id = ? AND disabled = 0 RETURNING id",
                                      (_now(), user_id)).fetchone() is None:
                    abort(409)
                steps = json.loads(steps) + [{"method": "totp", "amr": ["otp"], "at": int(now),
                                              "credential_id": credential_id}]
                if connection.execute("UPDATE login_transactions SET state = 'done', version = ?, steps_done = ? "
                                      "WHERE id = ? AND version = ?",
                                      (version + 1, json.dumps(steps), _sha256(handle), version)).rowcount != 1:
                    abort(409)
                sid = secrets.token_urlsafe(16)
                session_id = secrets.token_hex(32)
                connection.execute("INSERT INTO user_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   (session_id, sid, user_id, int(now), '["pwd", "otp", "mfa"]', _now(),
                                    "9999-12-31", request.user_agent.string[:200], request.remote_addr))
                facts = (_now(), 1, user_id, f"floor{user_id}@bench.test", user_id, request.remote_addr,
                         request.user_agent.string[:200])
                connection.executemany(
                    "INSERT INTO audit_events (at, org_id, event, actor_id, actor, subject_id, ip, user_agent, "
                    "details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(facts[0], facts[1], "login.second_factor", *facts[2:], json.dumps({"factor": "totp"})),
                     (facts[0], facts[1], "login.succeeded", *facts[2:], json.dumps({"client_id": "floor-client"}))])
                params = json.loads(authz)["params"]
                authorization_code = secrets.token_urlsafe(32)
                connection.execute("INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, "
                                   "scope, nonce, code_challenge, auth_time, amr, session_id, expires_at, "
                                   "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   (_sha256(authorization_code), params["client_id"], user_id, params["redirect_uri"],
                                    params["scope"], params["nonce"], params["code_challenge"], int(now),
                                    '["pwd", "otp", "mfa"]', sid, "9999-12-31", _now()))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            session.clear()  # rotated at sign-in
            session["sid"] = sid
            from urllib.parse import urlencode

            return redirect(f"{params['redirect_uri']}?" + urlencode(
                {"code": authorization_code, "state": params["state"], "iss": ISSUER}))

        return app

    def measure_into(self, timings: list) -> None:
        """From now on, each POST's thread CPU (inside the WSGI call, as request_cpu times the
        provider's) goes into `timings`, as request_cpu's rows."""
        inner = self.app.wsgi_app

        def measured(environ, start_response):
            cpu = time.thread_time()
            result = list(inner(environ, start_response))
            if environ["REQUEST_METHOD"] == "POST":
                timings.append(((time.thread_time() - cpu) * 1000, 12, 0.0, 0))
            return result

        self.app.wsgi_app = measured

    def post_next(self) -> None:
        """The next pending login's right code, posted through the test client as a browser would
        (its page fetched first for the session and the CSRF token)."""
        import pyotp

        handle, secret = self.pending.pop()
        browser = self.app.test_client()
        token = browser.get(f"/login/{handle}").get_data(as_text=True)
        response = browser.post(f"/login/{handle}", data={"csrf_token": token, "version": "2",
                                                          "code": pyotp.TOTP(secret).now()})
        assert response.status_code == 302 and "code=" in response.headers["Location"], response.status_code
