"""Handing an authenticated connection from a login process to a mail process.

The login process calls `session` on the mail process's socket
(<run>/mda-login/imap-mail.sock or pop3-mail.sock) with one descriptor:

- plaintext: the client's own socket. The login process stops reading it
  first, and sends the bytes it had read past the login command (a client
  that pipelines `LOGIN` and `SELECT` in one packet) as `pending`;
- TLS: the TLS session stays in the login process, which holds the key. It
  passes one end of a socketpair and proxies cleartext between the client's
  TLS connection and the other end until either side closes, as Dovecot's
  login proxy does.

The arguments are `token` (from the auth process: the mail process redeems
it for the user, so a login process cannot name one itself), `peer` (the
client's address), `secure` (TLS or not), `pending` (base64) and what the
protocol needs besides (IMAP: the LOGIN's `tag`). The answer is `{"accepted":
true}`, or `{"accepted": false, "reply": ..., "close": bool}`: the mail
process refused (too many connections of this user, POP3's maildrop in use)
and the login process sends `reply` itself, and goes on or closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from dataclasses import dataclass
from typing import Any

from common import ipc, log
from common.tlsstream import Stream
from common.unixchan import close_fds

ACCEPTED: dict[str, Any] = {"accepted": True}
# A proxied connection whose client went away gets this long to hear the end.
DRAIN_AFTER_CLIENT_EOF = 30.0
PROXY_READ = 64 * 1024


def refuse(reply: bytes, close: bool) -> dict[str, Any]:
    return {"accepted": False, "reply": base64.b64encode(reply).decode(), "close": close}


# -- the mail process's side ------------------------------------------------------------


@dataclass
class Received:
    sock: socket.socket
    user: str
    peer: str
    secure: bool
    pending: bytes


async def receive(args: dict[str, Any], fds: list[int], auth: ipc.Client) -> Received | bytes:
    """The handed-over connection, once the auth process vouched for its token;
    b"" (the descriptors closed) when it did not."""
    if len(fds) != 1:
        close_fds(fds)
        return b""
    sock = socket.socket(fileno=fds[0])
    try:
        reply = await auth.call("redeem", token=str(args.get("token", "")))
    except ipc.IPCError as e:
        log.get().error("login token not checked", error=str(e))
        reply = {}
    user = reply.get("user")
    if not user:
        log.get().warning("hand-over refused: login token unknown or used",
                          client=str(args.get("peer", "")))
        sock.close()
        return b""
    sock.setblocking(False)
    return Received(sock, str(user), str(args.get("peer", "")), bool(args.get("secure")),
                    base64.b64decode(str(args.get("pending", ""))))


# -- the login process's side ---------------------------------------------------------------


@dataclass
class Outcome:
    handed: bool  # the connection is the mail process's now (or ended in the proxy)
    reply: bytes = b""  # else: what to send the client
    close: bool = False  # and whether to close after it


async def hand_over(mail: ipc.Client, stream: Stream, pending: bytes, *, token: str,
                    peer: str, **extra: Any) -> Outcome:
    """Pass the connection on; when it comes back refused, the login process
    has it as before, with `pending` to read again (the caller feeds it back)."""
    secure = stream.secure
    args = dict(token=token, peer=peer, secure=secure, **extra)
    if not secure:
        # From here the socket's bytes are the mail process's to read.
        pending += stream.hold()
        sock = stream.transport.get_extra_info("socket") if stream.transport else None
        if sock is None:
            return Outcome(True)
        fd, ours = sock.fileno(), None
    else:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
    args["pending"] = base64.b64encode(pending).decode()
    try:
        try:
            answer, extra_fds = await mail.call_fds("session", fds=[fd], idempotent=True,
                                                    **args)
            close_fds(extra_fds)
        finally:
            if ours is not None:
                theirs.close()  # the mail process has its own copy, or none
    except ipc.IPCError as e:
        log.get().error("hand-over failed", error=str(e), client=peer)
        if ours is not None:
            ours.close()
        else:
            stream.release()
        return Outcome(False, b"", False)
    if not answer.get("accepted"):
        if ours is not None:
            ours.close()
        else:
            stream.release()
        return Outcome(False, base64.b64decode(str(answer.get("reply", ""))),
                       bool(answer.get("close")))
    if ours is None:
        stream.abandon()  # our copy of the descriptor goes; the connection stays
        return Outcome(True)
    await proxy(stream, ours)
    return Outcome(True)


async def proxy(stream: Stream, sock: socket.socket) -> None:
    """Cleartext between the client's TLS connection and the mail process,
    until the mail process closes (the session ended) or the client went."""
    try:
        reader, writer = await asyncio.open_connection(sock=sock, limit=PROXY_READ)
    except OSError:
        sock.close()
        stream.close()
        return

    async def client_to_mail() -> None:
        while data := await stream.read():
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def mail_to_client() -> None:
        while data := await reader.read(PROXY_READ):
            stream.write(data)
            await stream.drain()

    up = asyncio.create_task(client_to_mail())
    down = asyncio.create_task(mail_to_client())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and not down.done():
            # The client sent its end: let the mail process say its last words.
            await asyncio.wait({down}, timeout=DRAIN_AFTER_CLIENT_EOF)
    finally:
        for t in (up, down):
            t.cancel()
        for t in (up, down):
            with contextlib.suppress(BaseException):
                await t
        writer.close()
        stream.close()
