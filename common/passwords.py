"""argon2id password hashes, checked off the event loop and briefly remembered."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from common.fairshare import FairShare

_hasher = PasswordHasher()  # argon2-cffi's defaults: argon2id, t=3, m=64 MiB, p=4
# Only for test fixtures that create many users: the format is the same.
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def hash_password(password: str, cheap: bool = False) -> str:
    return (_cheap if cheap else _hasher).hash(password)


def dummy_hash() -> str:
    """A hash of a random password with the production cost, made once at start:
    an unknown user's password is checked against it, so that an unknown user
    costs as much time as a known one and a guesser can't tell them apart."""
    return _hasher.hash(secrets.token_bytes(32))


def check_password(stored_hash: str, password: str | bytes) -> bool:
    """Any bytes are a password that may simply be wrong (argon2 takes bytes as
    they are; a str is encoded as UTF-8, so pass client bytes as bytes)."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _as_bytes(password: str | bytes) -> bytes:
    return password if isinstance(password, bytes) else password.encode("utf-8", "surrogateescape")


class Verifier:
    """Checks passwords in worker threads (argon2-cffi releases the GIL).

    `threads` hashes run at once; one key (a client address) gets at most
    half of them and its further checks wait behind its own (fairshare.py),
    so one address's guesses cannot starve another's login.

    A successful check is remembered for `ttl` seconds, keyed by a keyed
    digest of user, hash and password, so a mail client that reconnects
    every minute does not cost 64 MiB and tens of milliseconds each time.
    A changed password changes the stored hash and so misses the cache.
    """

    def __init__(self, ttl: float = 60.0, threads: int = 4) -> None:
        self.ttl = ttl
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads),
                                        thread_name_prefix="argon2")
        self._share = FairShare(threads, max(1, threads // 2))
        self._key = os.urandom(32)
        self._cache: dict[bytes, float] = {}

    def _digest(self, user: str, stored_hash: str, password: bytes) -> bytes:
        msg = b"\0".join((user.encode("utf-8", "surrogateescape"), stored_hash.encode(),
                          password))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    async def verify(self, user: str, stored_hash: str, password: str | bytes,
                     key: Hashable = "") -> bool:
        password = _as_bytes(password)
        now = time.monotonic()
        digest = self._digest(user, stored_hash, password)
        if self.ttl > 0 and self._cache.get(digest, 0) > now:
            return True
        await self._slot(key)
        loop = asyncio.get_running_loop()
        work = self._pool.submit(check_password, stored_hash, password)
        # The slot is given back when the thread is done with it, even if our
        # caller stopped waiting: a hash that started runs to its end.
        work.add_done_callback(lambda _: self._release_from_thread(loop, key))
        ok = await asyncio.wrap_future(work)
        if ok and self.ttl > 0:
            if len(self._cache) > 10000:
                self._cache = {k: v for k, v in self._cache.items() if v > now}
            self._cache[digest] = now + self.ttl
        return ok

    async def _slot(self, key: Hashable) -> None:
        ticket = asyncio.get_running_loop().create_future()
        if self._share.ask(key, ticket):
            return
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self._release(key)  # granted just as the caller gave up
            else:
                self._share.withdraw(key, ticket)
            raise

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop, key: Hashable) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the process is ending
            loop.call_soon_threadsafe(self._release, key)

    def _release(self, key: Hashable) -> None:
        for granted_key, ticket in self._share.done(key):
            assert isinstance(ticket, asyncio.Future)
            if ticket.cancelled():
                self._release(granted_key)
            else:
                ticket.set_result(None)
