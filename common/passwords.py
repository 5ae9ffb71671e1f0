"""argon2id password hashes, checked off the event loop and briefly remembered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2-cffi's defaults: argon2id, t=3, m=64 MiB, p=4
# Only for test fixtures that create many users: the format is the same.
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def hash_password(password: str, cheap: bool = False) -> str:
    return (_cheap if cheap else _hasher).hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Verifier:
    """Checks passwords in worker threads (argon2-cffi releases the GIL).

    A successful check is remembered for `ttl` seconds, keyed by a keyed
    digest of user, hash and password, so a mail client that reconnects
    every minute does not cost 64 MiB and tens of milliseconds each time.
    A changed password changes the stored hash and so misses the cache.
    """

    def __init__(self, ttl: float = 60.0, workers: int = 2) -> None:
        self.ttl = ttl
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._key = os.urandom(32)
        self._cache: dict[bytes, float] = {}

    def _digest(self, user: str, stored_hash: str, password: str) -> bytes:
        msg = "\0".join((user, stored_hash, password)).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    async def verify(self, user: str, stored_hash: str, password: str) -> bool:
        now = time.monotonic()
        key = self._digest(user, stored_hash, password)
        if self.ttl > 0 and self._cache.get(key, 0) > now:
            return True
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, check_password, stored_hash, password)
        if ok and self.ttl > 0:
            if len(self._cache) > 10000:
                self._cache = {k: v for k, v in self._cache.items() if v > now}
            self._cache[key] = now + self.ttl
        return ok
