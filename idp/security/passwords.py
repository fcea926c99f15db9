"""Password hashing with argon2id (OWASP parameters), upgraded on login when parameters change,
or when the stored hash is another system's (`idp user import`: idp.security.foreign_hashes)."""
from __future__ import annotations

import time
from collections.abc import Callable

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.security import foreign_hashes
from idp.security.foreign_hashes import ARGON2_PREFIX


class Passwords:
    def __init__(self, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1,
                 on_hashed: Callable[[float], None] | None = None) -> None:
        """`on_hashed(cpu_seconds)` hears of each hash made or verified after this (idp.ops
        counts them: what the parameters cost on this hardware, under its real load)."""
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        # Verified against when the account does not exist, so that an unknown user
        # costs the same hash as a wrong password (no timing oracle for enumeration).
        self._dummy_hash = self._hasher.hash("dummy password for unknown accounts")
        self._on_hashed = on_hashed

    def hash(self, password: str) -> str:
        started = time.thread_time()
        try:
            return self._hasher.hash(password)
        finally:
            self._hashed(started)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        started = time.thread_time()
        try:
            if stored_hash and not stored_hash.startswith(ARGON2_PREFIX):
                # Imported from another system: its own algorithm, until the login upgrades it.
                return foreign_hashes.verify(stored_hash, password)
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        finally:
            self._hashed(started)

    def _hashed(self, started: float) -> None:
        # The thread's CPU (argon2-cffi hashes on the calling thread with parallelism 1; with
        # more lanes its own threads' share is not counted).
        if self._on_hashed is not None:
            self._on_hashed(time.thread_time() - started)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a hash that just verified should be replaced: another system's (bcrypt, PBKDF2),
        argon2i, or argon2id with other parameters than ours."""
        if not stored_hash.startswith(ARGON2_PREFIX):
            return True
        return self._hasher.check_needs_rehash(stored_hash)

    @staticmethod
    def parameters(stored_hash: str) -> dict | None:
        """The cost parameters a hash was made with (for the audit log of a rehash), or None for
        a hash none of the schemes reads. Public: they are written in the hash itself."""
        if not stored_hash.startswith(ARGON2_PREFIX):
            return foreign_hashes.describe(stored_hash)
        try:
            found = extract_parameters(stored_hash)
        except InvalidHashError:
            return None
        return {"type": found.type.name.lower(), "version": found.version, "time_cost": found.time_cost,
                "memory_cost": found.memory_cost, "parallelism": found.parallelism}
