"""What IMAP says before and at login, for the login process and the mail process alike.

The login process (mda/login/imap.py) speaks everything before
authentication; the mail process (server.py) everything after. The
capability lists and the literal limits of both states live here, once.
"""

from __future__ import annotations

from mda.imap import response as R
from mda.imap.events import LiteralTooLarge
from mda.imap.parser import Limits

BASE_CAPS = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE"]
AUTH_CAPS = ["UNSELECT", "UIDPLUS", "MOVE", "SPECIAL-USE", "CHILDREN", "LIST-EXTENDED",
             "LIST-STATUS", "ESEARCH", "CONDSTORE"]
# Before login, a literal may carry a user name or password, never a message:
# anything bigger is refused unread. 4096 is what RFC 7888's LITERAL- lets
# any client send without asking.
MAX_LITERAL_BEFORE_LOGIN = 4096
LIMITS_BEFORE_LOGIN = Limits(max_literal=MAX_LITERAL_BEFORE_LOGIN,
                             max_arg_literal=MAX_LITERAL_BEFORE_LOGIN)


def capabilities_before_login(secure: bool, plaintext_ok: bool) -> list[str]:
    caps = list(BASE_CAPS)
    if not secure:
        caps.append("STARTTLS")
    caps.append("AUTH=PLAIN" if plaintext_ok else "LOGINDISABLED")
    return caps


def capabilities_after_login(max_message_size: int) -> list[str]:
    # RFC 7889: one limit for every mailbox, so no STATUS/LIST form is
    # needed. Only after login, where it is the limit that applies.
    return [*BASE_CAPS, *AUTH_CAPS, f"APPENDLIMIT={max_message_size}"]


def literal_refusal_before_login(ev: LiteralTooLarge) -> tuple[list[bytes], bool]:
    """The answer to a literal over LIMITS_BEFORE_LOGIN, and whether the
    connection then closes: after a non-synchronizing literal, whose bytes
    are on their way and are never read."""
    if ev.synchronizing:
        return [R.no(ev.tag, f"Log in first: literals over "
                     f"{MAX_LITERAL_BEFORE_LOGIN} octets need a login")], False
    return [R.bye("Literal too large before login")], True


def logged_in(tag: str, max_message_size: int) -> bytes:
    """The tagged OK of a login, from the mail process that serves the session."""
    return R.ok(tag, "Logged in", R.code("CAPABILITY", *capabilities_after_login(max_message_size)))


def id_response() -> bytes:
    return R.data(b"ID", R.plist([R.string("name"), R.string("mailpair")]))


USER_LIMIT = R.bye("Too many connections for this user from your address", "LIMIT")
