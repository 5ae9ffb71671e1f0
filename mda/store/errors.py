"""What the store refuses, by kind, so a protocol can answer each one properly.

IMAP maps them to response codes ([NONEXISTENT], [ALREADYEXISTS],
[CANNOT], [LIMIT], [EXPUNGEISSUED]); POP3 to -ERR. Messages are written
for a person: the protocol may pass them on.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of everything the store raises on purpose."""


class InvalidName(StoreError, ValueError):
    """A folder name the store will not map to a directory (escapes, '.', control chars)."""


class NoSuchFolder(StoreError):
    """The folder does not exist (or has no directory of its own: it only holds others)."""


class FolderExists(StoreError):
    """Create or rename onto a name that is taken."""


class CannotDelete(StoreError):
    """INBOX, or a folder that exists only as the parent of others."""


class CannotRename(StoreError):
    """A folder into itself or below itself."""


class InvalidFlag(StoreError, ValueError):
    """A flag that is neither a system flag nor a usable keyword."""


class TooManyKeywords(StoreError):
    """Maildir gives a folder 26 keyword letters (a..z) and they are all taken."""


class ReadOnly(StoreError):
    """A change through a folder opened read-only (IMAP EXAMINE)."""


class UidValidityChanged(StoreError):
    """The folder was replaced under an open view (its UIDs mean other messages now):
    the view must be dropped (IMAP: BYE, or close the mailbox)."""


class MessageGone(StoreError):
    """The message was expunged (by this or another session) before it could be read."""


class LockTimeout(StoreError):
    """Another process held a Maildir lock for too long."""
