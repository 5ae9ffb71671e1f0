"""Folder names: what a user may call a folder and where it lives in the Maildir.

Names are Unicode strings with "/" between levels ("Archive/2024"). INBOX
is the Maildir itself and is matched without regard to case; every other
folder is a Maildir++ directory: "." and the levels joined by ".", each
level in IMAP's modified UTF-7 as Dovecot stores it by default, so
"Archive/Entwürfe" is `.Archive.Entw&APw-rfe`. That keeps a Maildir that
Dovecot served usable here and back.

Because "." separates levels on disk, a name may not contain one (Dovecot
refuses it too with this layout). Nothing a name can hold may lead outside
the Maildir: no empty level, no control character, no leading "~", and the
directory name is checked once more after encoding.
"""

from __future__ import annotations

from common import mutf7
from mda.store.errors import InvalidName

SEPARATOR = "/"
INBOX = "INBOX"
# RFC 6154 attributes for the folders every new mailbox gets (DESIGN.md).
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
# A directory entry holds at most 255 bytes on the filesystems we run on.
MAX_DIRNAME = 255
# Directories whose name starts with ".." are ours (a folder being created or
# deleted) and never folders.
PRIVATE_PREFIX = ".."


def _check_chars(name: str) -> None:
    for c in name:
        o = ord(c)
        if o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            raise InvalidName(f"folder name {name!r} contains a control character")
        if 0xD800 <= o < 0xE000:
            raise InvalidName(f"folder name {name!r} is not valid Unicode")
    if "." in name:
        raise InvalidName(f"folder name {name!r}: '.' is not allowed (it separates levels on disk)")
    if "*" in name or "%" in name:
        raise InvalidName(f"folder name {name!r}: '*' and '%' are wildcards, not allowed")


def normalize(name: str) -> str:
    """The canonical form of a folder name, or InvalidName.

    "inbox" becomes "INBOX", also as the first level ("inbox/x" is
    "INBOX/x"), so each folder has one spelling.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("empty folder name")
    _check_chars(name)
    if name.startswith("~"):
        raise InvalidName(f"folder name {name!r} may not start with '~'")
    parts = name.split(SEPARATOR)
    if any(p == "" for p in parts):
        raise InvalidName(f"folder name {name!r} has an empty level")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return SEPARATOR.join(parts)


def parts(name: str) -> list[str]:
    return normalize(name).split(SEPARATOR)


def parent(name: str) -> str | None:
    """'A/B/C' -> 'A/B'; None at the top."""
    head, sep, _ = normalize(name).rpartition(SEPARATOR)
    return head if sep else None


def ancestors(name: str) -> list[str]:
    """'A/B/C' -> ['A', 'A/B']."""
    levels = parts(name)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]


def is_inbox(name: str) -> bool:
    return normalize(name) == INBOX


def special_use(name: str) -> str | None:
    return SPECIAL_USE.get(normalize(name))


# -- one level of a directory or subscriptions line -------------------------


def encode_level(level: str) -> str:
    """A level of a name as it is stored: modified UTF-7 (common/mutf7)."""
    try:
        return mutf7.encode(level)
    except mutf7.UTF7Error:
        raise InvalidName(f"folder name level {level!r} is not valid Unicode") from None


def decode_level(raw: str) -> str:
    """A stored level as a name's level. One that is not modified UTF-7 was
    written as UTF-8 by some other tool: it is shown as it is."""
    try:
        return mutf7.decode(raw)
    except mutf7.UTF7Error:
        return raw


# -- names <-> Maildir++ directories --------------------------------------


def _checked_dirname(name: str, dirname: str) -> str:
    # Defence in depth: whatever the encoding did, the result must be one
    # plain entry inside the Maildir.
    if (
        "/" in dirname
        or "\0" in dirname
        or dirname.startswith(PRIVATE_PREFIX)
        or dirname in (".", "..")
    ):
        raise InvalidName(f"folder name {name!r} does not map to a safe directory")
    if len(dirname.encode("utf-8", "surrogateescape")) > MAX_DIRNAME:
        raise InvalidName(f"folder name {name!r} is too long")
    return dirname


def dirname(name: str) -> str:
    """'' for INBOX, else the Maildir++ directory: 'Archive/2024' -> '.Archive.2024'."""
    canonical = normalize(name)
    if canonical == INBOX:
        return ""
    encoded = "." + ".".join(encode_level(p) for p in canonical.split(SEPARATOR))
    return _checked_dirname(name, encoded)


def literal_dirname(name: str) -> str:
    """The directory as a tool that writes UTF-8 names would have made it (fallback lookup)."""
    canonical = normalize(name)
    if canonical == INBOX:
        return ""
    return _checked_dirname(name, "." + canonical.replace(SEPARATOR, "."))


def from_dirname(entry: str) -> str | None:
    """The folder name of a Maildir++ directory entry, or None if it is not one of ours to show."""
    if not entry.startswith(".") or entry.startswith(PRIVATE_PREFIX) or len(entry) < 2:
        return None
    levels = []
    for raw in entry[1:].split("."):
        if not raw:
            return None
        levels.append(decode_level(raw))
    try:
        name = normalize(SEPARATOR.join(levels))
    except InvalidName:
        return None
    # `.INBOX` would shadow the real INBOX, the Maildir root.
    return None if name == INBOX else name
