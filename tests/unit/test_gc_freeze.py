"""idp.ops.gc_freeze: the start-up heap is frozen when a process serves its first request, once.

Run in a child process: freezing is once per process, so this test process's own state
depends on which test served a request first.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_the_first_request_freezes_the_start_up_heap_once_and_building_the_app_does_not(tmp_path):
    script = textwrap.dedent(f"""
        import gc, json
        from idp.app import create_app

        app = create_app({{"server.database_url": "sqlite:///{tmp_path / 'gc.sqlite'}", "server.json_logs": False}})
        built = gc.get_freeze_count()
        client = app.test_client()
        client.get("/healthz")
        first = gc.get_freeze_count()
        collections = gc.get_stats()[2]["collections"]
        client.get("/healthz")
        print(json.dumps({{"built": built, "first": first,
                          "collected_again": gc.get_stats()[2]["collections"] != collections,
                          "frozen_again": gc.get_freeze_count() != first}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])

    assert seen["built"] == 0, "building the app (the CLI does, then exits) freezes nothing"
    assert seen["first"] > 10_000, "the first request freezes what start-up built"
    assert not seen["collected_again"] and not seen["frozen_again"], "later requests leave the GC alone"
