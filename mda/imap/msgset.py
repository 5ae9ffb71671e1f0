"""What the message commands share: the messages a sequence set names, flag
lists, dates, and turning store errors into tagged answers.

Everything here that touches the folder blocks (it takes the MailStore's
lock): call it from the session's worker thread (`session.run`).
"""

from __future__ import annotations

import bisect
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mda.imap import response as R
from mda.imap.seqset import SequenceSet
from mda.store import errors as E
from mda.store.folder import Folder

if TYPE_CHECKING:
    from mda.imap.session import Session

RECENT = "\\Recent"

# (sequence number, UID) of one message in the session's view.
Target = tuple[int, int]


class InvalidSequence(ValueError):
    """A message sequence number beyond the mailbox (the client answers BAD)."""


def resolve(folder: Folder, seqset: SequenceSet, *, uid: bool) -> list[Target]:
    """The messages a sequence set names, ascending, each once.

    By sequence number, `*` is the last message and a number beyond it is
    an error (InvalidSequence); an empty mailbox makes `1:*` name nothing.
    By UID, `*` is the highest UID in use, so `10:*` names the last message
    even when every UID is below 10 (RFC 3501 6.4.8); UIDs not in the
    mailbox are ignored.
    """
    uids = folder.uid_column
    if uid:
        found: list[Target] = []
        for lo, hi in seqset.resolve(uids[-1] if uids else 0).ranges:
            first, last = bisect.bisect_left(uids, lo), bisect.bisect_right(uids, hi)
            found.extend((i + 1, uids[i]) for i in range(first, last))
        return found
    count = len(uids)
    if count == 0 and seqset.uses_star:
        return []
    numbers = seqset.resolve(count)
    largest = numbers.largest
    if largest is not None and largest > count:
        raise InvalidSequence(f"No message {largest}: the mailbox has {count}")
    return [(seq, uids[seq - 1]) for seq in numbers]


def flag_list(flags: Iterable[str], recent: bool) -> bytes:
    """`(\\Seen $Label1 \\Recent)`: as Session.flag_list writes it."""
    if isinstance(flags, frozenset):
        return _flag_list(flags, recent)  # the store's flag sets repeat: format each once
    return _format_flags(flags, recent)


@functools.lru_cache(maxsize=4096)
def _flag_list(flags: frozenset[str], recent: bool) -> bytes:
    return _format_flags(flags, recent)


def _format_flags(flags: Iterable[str], recent: bool) -> bytes:
    names = sorted(flags)
    if recent:
        names.append(RECENT)
    return R.flag_list(names)


def local_time(epoch: int) -> datetime:
    """An internal date (seconds since the epoch) in the server's time zone:
    what INTERNALDATE shows and what SEARCH BEFORE/ON/SINCE compare."""
    return datetime.fromtimestamp(epoch).astimezone()


def number_set(numbers: Collection[int]) -> str:
    """`1:3,5`, for COPYUID and MODIFIED."""
    return R.sequence_set(numbers).decode("ascii")


Handler = Callable[[Any, Any], AsyncIterator[bytes]]


def guarded(handler: Handler) -> Handler:
    """Answer a store failure with a tagged NO instead of ending the session.

    What the session itself answers well (no such mailbox, bad name, a lock
    held too long) passes through to it.
    """

    @functools.wraps(handler)
    async def wrapper(session: Session, cmd: Any) -> AsyncIterator[bytes]:
        try:
            async for out in handler(session, cmd):
                yield out
        except (E.InvalidName, E.NoSuchFolder, E.LockTimeout):
            raise
        except E.ReadOnly:
            yield R.no(cmd.tag, "The mailbox is open read-only (EXAMINE)")
        except E.TooManyKeywords:
            yield R.no(cmd.tag, "Too many keywords in this mailbox (Maildir allows 26)",
                       R.code("LIMIT"))
        except E.InvalidFlag as e:
            yield R.no(cmd.tag, str(e) or "Invalid flag", R.code("CANNOT"))
        except E.MessageGone:
            yield R.no(cmd.tag, "Some of the messages were expunged meanwhile",
                       R.code("EXPUNGEISSUED"))
        except E.StoreError as e:
            session.log.warning("store refused", command=cmd.name, error=str(e))
            yield R.no(cmd.tag, f"{cmd.name} failed: {e}")
        except (OSError, sqlite3.Error) as e:
            session.log.error("store failed", command=cmd.name, error=str(e))
            yield R.no(cmd.tag, f"{cmd.name} failed on the server, try again later",
                       R.code("UNAVAILABLE"))

    return wrapper
