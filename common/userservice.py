"""The requests answered by the one process of a daemon that reads the users file.

mtad's lookup process and mdad's auth process serve these over IPC; the
network-facing processes ask them instead of reading credentials.

`auth` is where every password is checked and every refusal is decided,
counted (authpenalty.py) and logged, whichever protocol asked: a request
carries the user, the password, an optional SASL authorization identity,
the client's address and the service (smtp, imap, pop3). Each refused login
is logged here, once, as one fixed line (see failure_event) that the
fail2ban filter in deploy/fail2ban/ matches in either log format.

mdad's login processes ask on a socket of their own (`login`), which answers
`auth` alone and adds to a success a one-time `token`. The mail process
that is handed the connection redeems it (`redeem`, on the mail processes'
socket) for the user before it serves anyone: a login process, which parses
what strangers send before any password, can pass a connection on but
cannot name the user it belongs to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from typing import Any

from common import authpenalty, ipc, log
from common.child import ChildContext
from common.passwords import Verifier, dummy_hash
from common.senders import owns
from common.users import UserDB, normalize

# A user name is the client's: at most this much of it goes into a log line.
LOGGED_USER_MAX = 100
# A login token is redeemed at once by the mail process the connection goes to.
TOKEN_TTL = 60.0


def _loggable(text: str) -> str:
    """Client text made safe for one log line: no space, control character or
    non-ASCII byte survives unescaped, so nothing the client sends can end the
    line or fake another `address=` in it."""
    short = text[:LOGGED_USER_MAX]
    out = short.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")
    return out + ("..." if len(text) > LOGGED_USER_MAX else "")


def failure_event(address: str, user: str, service: str) -> str:
    """The one line of a refused login (the fail2ban filter depends on its shape)."""
    return (f"login failed: address={_loggable(address)} user={_loggable(user) or '-'} "
            f"service={_loggable(service)}")


class UserService:
    def __init__(self, ctx: ChildContext) -> None:
        cfg = ctx.cfg
        self.db = UserDB(cfg.paths.users, cfg.paths.aliases, cfg.domains)
        self.send_as = {normalize(k): v for k, v in cfg.mta.send_as.items()}
        self.verifier = Verifier(ttl=cfg.auth.cache_ttl, threads=cfg.auth.hash_threads)
        self.penalties = authpenalty.Penalties(cfg.auth.failure_delay, cfg.auth.failure_delay_max,
                                               cfg.auth.failure_forget, time.monotonic)
        self.dummy = dummy_hash()
        self._attempt_key = os.urandom(32)
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expires)
        self.log = log.get()

    def _attempt(self, user: str, password: bytes) -> bytes:
        msg = user.encode("utf-8", "surrogateescape") + b"\0" + password
        return hmac.new(self._attempt_key, msg, hashlib.sha256).digest()[:16]

    async def auth(self, req: dict[str, Any]) -> dict[str, Any]:
        arrived = time.monotonic()
        user = normalize(str(req.get("user", "")))
        # Client bytes travel as text with surrogateescape; argon2 gets them back as bytes.
        password = str(req.get("password", "")).encode("utf-8", "surrogateescape")
        authzid = normalize(str(req.get("authzid") or ""))
        address = str(req.get("address") or "unknown")
        service = str(req.get("service") or "unknown")
        client = authpenalty.client_key(address)
        hold = self.penalties.hold(client)
        if hold > 0:
            await asyncio.sleep(hold)
        record = self.db.get(user)
        # An unknown user costs a real hash too: the answer's timing tells nothing.
        ok = await self.verifier.verify(user, record.password_hash if record else self.dummy,
                                        password, key=client)
        # Logging in as someone else (a master user) is not offered.
        if ok and record is not None and authzid in ("", user):
            self.penalties.succeeded(client)
            return {"valid": True, "user": record.address}
        answer_in = self.penalties.failed(client, user, self._attempt(user, password))
        self.log.info(failure_event(address, user, service))
        await asyncio.sleep(max(0.0, arrived + answer_in - time.monotonic()))
        return {"valid": False, "user": None}

    async def login_auth(self, req: dict[str, Any]) -> dict[str, Any]:
        """`auth` for a login process: a success carries a token for the mail process."""
        reply = await self.auth(req)
        if reply["valid"]:
            now = time.monotonic()
            for token, (_, expires) in list(self.tokens.items()):
                if expires < now:
                    del self.tokens[token]
            token = os.urandom(16).hex()
            self.tokens[token] = (reply["user"], now + TOKEN_TTL)
            reply["token"] = token
        return reply

    async def redeem(self, req: dict[str, Any]) -> dict[str, Any]:
        """The user a login token was given for, once; None for an unknown or old one."""
        user, expires = self.tokens.pop(str(req.get("token", "")), (None, 0.0))
        return {"user": user if expires >= time.monotonic() else None}

    async def resolve(self, req: dict[str, Any]) -> dict[str, Any]:
        r = self.db.resolve(str(req.get("address", "")))
        return {"kind": r.kind, "targets": list(r.targets)}

    async def sender(self, req: dict[str, Any]) -> dict[str, Any]:
        """May this login use this MAIL FROM (common/senders.py)?"""
        login = normalize(str(req.get("login", "")))
        sender = normalize(str(req.get("sender", "")))
        r = self.db.resolve(sender)
        reaches = r.targets if r.kind == "local" else ()
        return {"allowed": owns(login, sender, reaches, self.send_as.get(login, ()))}

    async def user(self, req: dict[str, Any]) -> dict[str, Any]:
        record = self.db.get(str(req.get("address", "")))
        if record is None:
            return {"exists": False}
        return {"exists": True, "address": record.address, "fields": record.fields}

    def handlers(self) -> dict[str, ipc.Handler]:
        return {"auth": self.auth, "resolve": self.resolve, "user": self.user,
                "sender": self.sender, "redeem": self.redeem}

    def login_handlers(self) -> dict[str, ipc.Handler]:
        return {"auth": self.login_auth}


async def serve(ctx: ChildContext) -> None:
    service = UserService(ctx)
    (sock,) = ctx.sockets["ipc"]
    servers = [await ipc.serve(sock, service.handlers())]
    for login in ctx.sockets.get("login", []):
        servers.append(await ipc.serve(login, service.login_handlers()))
    # A socket for a peer that only routes addresses (mtad's queue, for DSNs):
    # it may ask where an address goes, not check a password.
    for other in ctx.sockets.get("resolve", []):
        servers.append(await ipc.serve(other, {"resolve": service.resolve}))
    log.get().info("ready")
    await ctx.stopping.wait()
    for server in servers:
        await server.drain()
