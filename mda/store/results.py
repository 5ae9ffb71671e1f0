"""What store operations return: plain values, no protocol in them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FolderInfo:
    """One entry of MailStore.list_folders()."""

    name: str  # "INBOX", "Archive/2024"
    selectable: bool  # False: no directory of its own, only a parent of others
    has_children: bool
    special_use: str | None  # "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive" (RFC 6154)
    subscribed: bool

    def attributes(self) -> tuple[str, ...]:
        """The RFC 3501/6154 attributes of a LIST reply (without \\Subscribed)."""
        found = []
        if not self.selectable:
            found.append("\\Noselect")
        found.append("\\HasChildren" if self.has_children else "\\HasNoChildren")
        if self.special_use:
            found.append(self.special_use)
        return tuple(found)


@dataclass(frozen=True)
class FolderStatus:
    """MailStore.status(): the STATUS items, from the index without opening a message."""

    messages: int
    recent: int  # messages still in new/: no session has seen them yet
    uidnext: int
    uidvalidity: int
    unseen: int  # messages without \\Seen
    highestmodseq: int


@dataclass(frozen=True)
class AppendResult:
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class CopyResult:
    """COPY/MOVE: pairs of (source uid, new uid in the destination), ascending by source.

    missing: requested UIDs that were expunged before they could be copied.
    expunged/expunged_seqs (MOVE only): the source messages now gone from
    this session's view, as Folder.expunge reports them.
    """

    uidvalidity: int
    pairs: list[tuple[int, int]]
    missing: list[int] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    expunged_seqs: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StoreResult:
    """Folder.store(): what changed.

    changed: uid -> its flags now, for messages whose flags changed.
    modified: UIDs left alone because their modseq was above UNCHANGEDSINCE.
    missing: UIDs already expunged (by another session).
    modseq: the new modseq of the changed messages (unchanged if none).
    """

    changed: dict[int, frozenset[str]]
    modified: list[int]
    missing: list[int]
    modseq: int


@dataclass
class Changes:
    """Folder.refresh(): what other sessions and programs did since the last refresh.

    expunged: UIDs removed from the view (ascending); expunged_seqs: their
    sequence numbers, highest first, which stay right when sent one after
    the other in that order (IMAP EXPUNGE). added: new UIDs now at the end
    of the view (IMAP EXISTS is len(folder)). flags: UIDs (not in added)
    whose flags or modseq changed. uidvalidity_changed / gone: the folder
    was replaced or deleted; the view is empty and the session should end
    or deselect.
    """

    expunged: list[int] = field(default_factory=list)
    expunged_seqs: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    uidvalidity_changed: bool = False
    gone: bool = False

    def __bool__(self) -> bool:
        return bool(self.expunged or self.added or self.flags or self.uidvalidity_changed
                    or self.gone)


@dataclass(frozen=True)
class ExpungeResult:
    """Folder.expunge(): UIDs removed (ascending) and their sequence numbers, highest first."""

    uids: list[int]
    seqs: list[int]
    modseq: int
