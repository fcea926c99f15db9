"""Admin pages at scale: 100,000 users and their credentials in PostgreSQL (issue 5).

    .venv/bin/python bench/admin_scale.py                      # IDP_TEST_DATABASE_URL or the local default
    .venv/bin/python bench/admin_scale.py --users 20000 --repeat 20
    .venv/bin/python bench/admin_scale.py --audit-events 2000000 --only audit   # the audit log at scale

Loads one organization of N users (plus a second organization of N/10, so that org
scoping is exercised) into a private schema, with credentials for the users who have
a second factor, a realistic spread of per-user settings (follow / required / exempt,
some exemptions expired), then renders each admin page through the app in-process
(Flask's test client: the whole view, its SQL and the template; no network) and
reports p50 / p99 / max per page. The target is p99 < 300 ms.

Pages: the users list (first page, each status filter, a search, a page deep in the
list via the keyset), Account > Security (distribution + impact), the audit log with
each of its filters: none, a page deep in the log, a person by e-mail, by full name, by
surname (about 1% of the organization), a broad match (10%), nobody, a person of the
other organization (nothing may show), one user by id, an action (frequent, rare, a
prefix), an action and a person together; and the small organization's admin too.

`--audit-events N` (default 50,000) events are written by one INSERT ... SELECT over
generate_series (2,000,000 in about a minute), spread over both organizations in
proportion to their users, over the last year in id order, with the mix of a real log:
mostly sign-ins, then sign-outs, failed passwords, second factors, consents, token
revocations, enrolments, password changes and resets, and the admins' own actions
(policy changes, factor resets, disabling) about their members.

Writes bench/results/admin-<date>.md (or --output) and prints the same table. The schema
is dropped at the end (--keep-schema keeps it, for EXPLAIN; drop it yourself).
"""
from __future__ import annotations

import argparse
import datetime
import html
import os
import random
import re
import secrets
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


FIRST_NAMES = ("Alice Bob Carol David Emma Farid Grace Hugo Ines Jules Karim Laura Marc Nadia Oscar Paula "
               "Quentin Rosa Samir Theo Ursula Victor Wendy Xavier Yasmine Zoe Anna Louis Chloe Lucas "
               "Sarah Hannah Jonas Lea Noah Mia Elias Sofia Omar Amira Pierre Marie Jean Claire").split()
LAST_NAMES = ("Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre "
              "Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard Andre Mercier Dupont Lambert "
              "Bonnet Francois Martinez Legrand Garnier Faure Rousseau Blanc Guerin Muller Henry Roussel "
              "Nicolas Perrin Morin Mathieu Clement Gauthier Dumont Lopez Fontaine Chevalier Robin Masson "
              "Sanchez Gerard Nguyen Boyer Denis Lemaire Duval Joly Gautier Roger Roche Roy Noel Meyer "
              "Lucas Meunier Jean Perez Marchand Dufour Blanchard Marie Barbier Brun Dumas Brunet Schmitt "
              "Leroux Colin Fernandez Pierre Renard Arnaud Rolland Caron Aubert Giraud Leclerc Vidal "
              "Bourgeois Renaud Lemoine Picard Gaillard Philippe Leclercq Lacroix Fabre Dupuis Olivier").split()

# The audit log's mix: (share, event, who acts). "self": the user signed in; "nobody": no one
# signed in (a failed password); "admin": their organization's admin, about them.
EVENT_MIX = (
    (0.715, "login.succeeded", "self"), (0.05, "session.ended", "self"), (0.03, "login.signed_out", "self"),
    (0.07, "login.password_failed", "nobody"), (0.04, "login.second_factor", "self"),
    (0.025, "consent.granted", "self"), (0.02, "token.revoked", "self"), (0.02, "factor.enrolled", "self"),
    (0.01, "user.password_changed", "self"), (0.01, "password_reset.requested", "nobody"),
    (0.005, "policy.user_requirement_changed", "admin"), (0.003, "factor.reset", "admin"),
    (0.002, "user.disabled", "admin"),
)


def load_audit_events(n_events: int, n_users: int, total: int, orgs: dict) -> None:
    """`n_events` events in one INSERT ... SELECT: a user drawn uniformly among all (so the
    organizations share the log as they share the users), an event of EVENT_MIX, times over
    the last year rising with the id (as they are written)."""
    from idp.db import db

    cases, acting, bound = [], [], 0.0
    for share, name, who in EVENT_MIX:
        bound += share
        cases.append(f"WHEN r < {bound:.4f} THEN '{name}'")
        acting.append(f"WHEN r < {bound:.4f} THEN '{who}'")
    big, small = orgs["big"], orgs["small"]
    db.session.execute(text("SELECT setseed(0.42)"))
    db.session.execute(text(f"""
        INSERT INTO audit_events (at, org_id, event, actor_id, actor, subject_id, ip, user_agent, details)
        SELECT now() - interval '365 days' * (1 - g::float8 / {n_events}),
               CASE WHEN u <= {n_users} THEN {big.id} ELSE {small.id} END,
               event,
               CASE who WHEN 'self' THEN u WHEN 'admin' THEN CASE WHEN u <= {n_users} THEN 1 ELSE {n_users + 1} END END,
               CASE who WHEN 'admin' THEN CASE WHEN u <= {n_users} THEN 'user000000@big.example'
                                              ELSE 'user{n_users:06d}@small.example' END ELSE '' END,
               u, '203.0.113.' || (g % 250), 'Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0',
               CASE WHEN event = 'factor.enrolled' THEN '{{"factor": "totp"}}' ELSE '{{}}' END::jsonb
        FROM (SELECT g, u, r, CASE {' '.join(cases)} ELSE 'user.disabled' END AS event,
                     CASE {' '.join(acting)} ELSE 'admin' END AS who
              FROM (SELECT g, 1 + floor(random() * {total})::int AS u, random() AS r
                    FROM generate_series(1, {n_events}) g) drawn) mixed"""))
    db.session.commit()


def load(n_users: int, n_events: int, seed: int = 7) -> dict:
    from idp.db import db, utcnow
    from idp.models import Credential, Organization, User

    rnd = random.Random(seed)
    today = utcnow().date()
    big = Organization(name="Big", require_2fa=False)
    small = Organization(name="Small", require_2fa=True)
    db.session.add_all([big, small])
    db.session.commit()
    users, credentials = [], []
    total = n_users + n_users // 10
    for i in range(total):
        org = big if i < n_users else small
        mode = rnd.choices(["follow", "required", "exempt"], [88, 8, 4])[0]
        until = None
        if mode == "exempt" and rnd.random() < 0.6:
            until = today + datetime.timedelta(days=rnd.randint(-30, 60))
        count = rnd.choices([0, 1, 2], [50, 35, 15])[0]
        users.append({"id": i + 1, "org_id": org.id, "email": f"user{i:06d}@{org.name.lower()}.example",
                      "public_id": secrets.token_hex(16), "role": "user",
                      "name": f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}",
                      "email_verified": True, "disabled": False, "mfa_setting": mode, "exempt_until": until,
                      "second_factor_count": count, "logins_since_required": 0, "created_at": utcnow()})
        for k in range(count):
            credentials.append({"user_id": i + 1, "factor": "totp" if k == 0 else "webauthn", "label": "device",
                                "public_json": {}, "counter": 0, "created_at": utcnow()})
    users[0]["role"] = "admin"
    users[n_users]["role"] = "admin"  # the small organization's
    for start in range(0, len(users), 20000):
        db.session.execute(insert(User), users[start:start + 20000])
    for start in range(0, len(credentials), 20000):
        db.session.execute(insert(Credential), credentials[start:start + 20000])
    db.session.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))"))
    db.session.commit()
    load_audit_events(n_events, n_users, total, {"big": big, "small": small})
    return {"admin": db.session.get(User, 1), "small_admin": db.session.get(User, n_users + 1),
            "org_id": big.id, "credentials": len(credentials), "total_users": total,
            "named": db.session.get(User, 42).name}


def sign_in(app, user):
    from idp.db import db, utcnow
    from idp.models import UserSession
    from idp.security.tokens import random_token, sha256_hex

    token = random_token(32)
    db.session.add(UserSession(id=sha256_hex(token), sid=random_token(16), user_id=user.id,
                               auth_time=int(time.time()), amr=["pwd", "otp", "mfa"], acr="urn:idp:acr:mfa",
                               expires_at=utcnow() + datetime.timedelta(hours=1)))
    db.session.commit()
    client = app.test_client()
    with client.session_transaction() as session:
        session["sso"] = token
    return client


def measure(client, url: str, repeat: int) -> dict:
    from idp.db import db

    timings = []
    for i in range(repeat + 2):
        db.session.remove()
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code)
        if i >= 2:  # warm-up
            timings.append(elapsed)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(round(0.99 * (len(timings) - 1))))]
    return {"p50": statistics.median(timings), "p99": p99, "max": timings[-1], "n": len(timings)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--audit-events", type=int, default=50_000)
    parser.add_argument("--only", choices=["users", "audit"], help="measure only these pages")
    parser.add_argument("--output", help="the report's path (default bench/results/admin-<date>.md)")
    parser.add_argument("--keep-schema", action="store_true", help="keep the loaded schema (prints its name)")
    parser.add_argument("--database-url", default=os.environ.get("IDP_TEST_DATABASE_URL") or DEFAULT_URL)
    args = parser.parse_args()

    schema = f"idp_test_{int(time.time())}_adminbench"
    admin_engine = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(args.database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    rows = []
    try:
        from idp.app import create_app
        from idp.db import Base, db

        app = create_app({"server.database_url": url, "server.json_logs": False, "server.log_level": "WARNING"})
        with app.app_context():
            Base.metadata.create_all(db.engine)
            started = time.perf_counter()
            facts = load(args.users, args.audit_events)
            load_seconds = time.perf_counter() - started
            # What autovacuum does soon after a bulk load: statistics and the visibility map
            # (index-only scans over ix_users_org_policy).
            with admin_engine.connect() as conn:
                conn.execute(text(f'VACUUM ANALYZE "{schema}".users, "{schema}".credentials, '
                                  f'"{schema}".audit_events'))
            client = sign_in(app, facts["admin"])
            small_client = sign_in(app, facts["small_admin"])
            deep = db.session.scalar(select(text("id")).select_from(text("users"))
                                     .where(text(f"org_id = {facts['org_id']}")).order_by(text("id"))
                                     .offset(args.users // 2).limit(1))
            deep_event = db.session.scalar(text("SELECT max(id) / 2 FROM audit_events"))
            surname = facts["named"].split()[-1]
            user_pages = [
                ("users, first page", "/admin/users"),
                ("users, status not_active", "/admin/users?status=not_active"),
                ("users, status required_not_set_up", "/admin/users?status=required_not_set_up"),
                ("users, status active_voluntary", "/admin/users?status=active_voluntary"),
                ("users, status active_required", "/admin/users?status=active_required"),
                ("users, search", "/admin/users?q=user0999"),
                ("users, search + status", "/admin/users?q=user09&status=active_required"),
                ("users, page in the middle", f"/admin/users?after={deep}"),
                ("account security (distribution)", "/admin/security"),
            ]
            audit_pages = [
                ("audit log", "/admin/audit"),
                ("audit log, half-way down (keyset)", f"/admin/audit?after={deep_event}"),
                ("audit log, by e-mail", "/admin/audit?user=user000042@"),
                ("audit log, by full name", f"/admin/audit?user={quote(facts['named'])}"),
                ("audit log, by surname (~1% of users)", f"/admin/audit?user={quote(surname)}"),
                ("audit log, broad search (10% of users)", "/admin/audit?user=user00"),
                ("audit log, search matching nobody", "/admin/audit?user=nobody-here"),
                ("audit log, a member of the other org", f"/admin/audit?user=user{args.users + 5:06d}@"),
                ("audit log, one user by id", "/admin/audit?user_id=42"),
                ("audit log, by user, page 2", "AUDIT_USER_PAGE_2"),
                ("audit log, action login.succeeded (70%)", "/admin/audit?action=login.succeeded"),
                ("audit log, action factor.reset (0.3%)", "/admin/audit?action=factor.reset"),
                ("audit log, action prefix policy.", "/admin/audit?action=policy."),
                ("audit log, action prefix login.", "/admin/audit?action=login."),
                ("audit log, action + surname", f"/admin/audit?action=factor.&user={quote(surname)}"),
                ("audit log, action + broad search", "/admin/audit?action=user.&user=user00"),
                ("small org: audit log", "SMALL:/admin/audit"),
                ("small org: audit log, by surname", f"SMALL:/admin/audit?user={quote(surname)}"),
                ("small org: audit log, action factor.reset", "SMALL:/admin/audit?action=factor.reset"),
            ]
            pages = {"users": user_pages, "audit": audit_pages}.get(args.only, user_pages + audit_pages)
            for label, page in pages:
                if page == "AUDIT_USER_PAGE_2":  # the "Older" link of a person's first page
                    first = client.get(f"/admin/audit?user={quote(surname)}").get_data(as_text=True)
                    page = html.unescape(re.search(r'rel="next" href="([^"]+)"', first).group(1))
                who = client
                if page.startswith("SMALL:"):
                    who, page = small_client, page.removeprefix("SMALL:")
                rows.append((label, page, measure(who, page, args.repeat)))
            db.session.remove()
            db.engine.dispose()
    finally:
        if args.keep_schema:
            print(f"schema kept: {schema}")
        else:
            with admin_engine.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin_engine.dispose()

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Admin pages at scale ({stamp})", "",
             f"PostgreSQL, {args.users:,} users in the measured organization ({facts['total_users']:,} in all), "
             f"{facts['credentials']:,} credentials, {args.audit_events:,} audit events; loaded in {load_seconds:.1f} s. "
             f"Each page rendered in-process {args.repeat} times after 2 warm-ups (view + SQL + template, "
             f"no network). Target: p99 < 300 ms.", "",
             "| page | URL | p50 ms | p99 ms | max ms |", "| --- | --- | ---: | ---: | ---: |"]
    for label, page, m in rows:
        lines.append(f"| {label} | `{page}` | {m['p50']:.1f} | {m['p99']:.1f} | {m['max']:.1f} |")
    worst = max(m["p99"] for _, _, m in rows)
    lines += ["", f"Worst p99: {worst:.1f} ms ({'within' if worst < 300 else 'OVER'} the 300 ms target)."]
    report = "\n".join(lines) + "\n"
    print(report)
    out = Path(args.output) if args.output else ROOT / "bench" / "results" / f"admin-{datetime.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(f"written to {out}")
    return 0 if worst < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
