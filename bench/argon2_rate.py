"""How many argon2id verifications per second this machine computes with the configured parameters:
the ceiling for password logins (one verification each). Measured per core and with one process
per core (the gunicorn workers' situation), using the provider's own `Passwords` class.
"""
from __future__ import annotations

import multiprocessing
import os
import time


def _verify_for(args) -> int:
    params, seconds = args
    from idp.security.passwords import Passwords

    passwords = Passwords(**params)
    stored = passwords.hash("correct horse battery staple")
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        passwords.verify(stored, "correct horse battery staple")
        done += 1
    return done


def measure(seconds: float = 5.0) -> dict:
    from idp.config import load_settings

    settings = load_settings()
    params = {"time_cost": int(settings.get("security.argon2_time_cost")),
              "memory_cost": int(settings.get("security.argon2_memory_cost")),
              "parallelism": int(settings.get("security.argon2_parallelism"))}
    one = _verify_for((params, seconds)) / seconds
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        counts = pool.map(_verify_for, [(params, seconds)] * cores)
    return {"params": params, "per_core": one, "ms_per_hash": 1000 / one, "cores": cores,
            "all_cores": sum(counts) / seconds}


if __name__ == "__main__":
    print(measure(3.0))
