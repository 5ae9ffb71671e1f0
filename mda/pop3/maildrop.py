"""One POP3 session's maildrop: the user's INBOX, locked, as it was at login.

RFC 1939 wants the maildrop to stay put for a session: message numbers,
sizes and deletions refer to the list taken at login. The list is a store
Folder view that is never refreshed; messages delivered meanwhile wait for
the next session, and one that an IMAP client expunges meanwhile cannot be
read (MessageGone) but keeps its number.

Exclusive access is a flock on `mailpair-pop3.lock` in the Maildir, held
for the session: a second POP3 login to the same mailbox, from this
process or another, gets InUse. IMAP does not take it (RFC 1939 locks
against other POP3 sessions; IMAP clients work beside them, as with
Dovecot). The kernel drops the lock when the process dies, so a crash never
leaves a mailbox locked.

Everything here blocks (files, SQLite): call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mda.store import flags
from mda.store.errors import MessageGone
from mda.store.folder import Folder
from mda.store.mailstore import MailStore

LOCK_NAME = "mailpair-pop3.lock"


class InUse(Exception):
    """Another POP3 session has this maildrop."""


def dovecot_uidl(uid: int, uidvalidity: int) -> str:
    """Dovecot's default pop3_uidl_format, %08Xu%08Xv: UID then UIDVALIDITY in hex.

    In lower case, although the format says X: Dovecot 2.3's var-expand
    prints its X modifier with "%llx". POP3 clients compare UIDLs as
    strings, so a client that moves between Dovecot and us, or between our
    IMAP and POP3, sees the same UIDL for the same message and downloads
    nothing twice only if the bytes are the same.
    """
    return f"{uid:08x}{uidvalidity:08x}"


class Maildrop:
    def __init__(self, root: Path, default_folders: Sequence[str] = (),
                 user: str | None = None) -> None:
        """Open and lock the Maildir at root; InUse if another session holds it."""
        store = MailStore(root, default_folders=default_folders, user=user)
        self.store: MailStore | None = store
        self._lock_fd: int | None = None
        self.folder: Folder | None = None
        try:
            self._lock(root / LOCK_NAME)
            self.folder = store.open_folder("INBOX")
            self.uidvalidity = self.folder.uidvalidity
            sizes = self.folder.sizes()
        except BaseException:
            self.close()
            raise
        # A message gone between listing and sizing is not offered at all.
        self.messages: list[tuple[int, int]] = [(u, sizes[u]) for u in self.folder.uids
                                                if u in sizes]

    def _lock(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InUse("the maildrop is in use by another POP3 session") from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def uidl(self, uid: int) -> str:
        return dovecot_uidl(uid, self.uidvalidity)

    def read(self, uid: int) -> bytes:
        """The message with CRLF lines, as LIST counted it; MessageGone if expunged."""
        assert self.folder is not None
        return self.folder.read_crlf(uid)

    def read_many(self, uids: list[int]) -> dict[int, bytes]:
        """read() for several messages in one call; those expunged meanwhile are left out."""
        assert self.folder is not None
        found = {}
        for uid in uids:
            with contextlib.suppress(MessageGone):
                found[uid] = self.folder.read_crlf(uid)
        return found

    def finish(self, deleted: Iterable[int], seen: Iterable[int]) -> int:
        """Mark retrieved messages \\Seen and delete the others; the number deleted.

        \\Seen is what Dovecot does by default (pop3_no_flag_updates = no), so
        an IMAP client of the same mailbox shows what POP3 already fetched.
        """
        assert self.folder is not None
        gone = set(deleted)
        keep_seen = sorted(set(seen) - gone)
        if keep_seen:
            self.folder.store(keep_seen, [flags.SEEN], "add")
        if not gone:
            return 0
        return len(self.folder.expunge(sorted(gone), require_deleted=False).uids)

    def close(self) -> None:
        """Release the lock and the store; safe to call twice."""
        folder, self.folder = self.folder, None
        store, self.store = self.store, None
        try:
            if folder is not None:
                folder.close()
            if store is not None:
                store.close()
        finally:
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                with contextlib.suppress(OSError):
                    os.close(fd)
