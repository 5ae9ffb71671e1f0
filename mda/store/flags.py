"""Flags as Maildir keeps them: letters in the `:2,` info of a file name.

`1700000000.M1P2.host,S=120:2,FRSa` is flagged, answered, seen and has the
keyword whose letter is `a` (see keywords.py). Uppercase letters are the
standard Maildir flags, written sorted, so mutt, Dovecot and any other
Maildir reader see what we set:

    D \\Draft   F \\Flagged   P passed ($Forwarded)   R \\Answered
    S \\Seen    T \\Deleted (trashed)

Flags are passed around as strings, the system flags spelt as IMAP does
("\\Seen"); anything else is a keyword. Letters we do not know are kept
as they are when a file is renamed.
"""

from __future__ import annotations

from collections.abc import Iterable

from mda.store.errors import InvalidFlag

ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
SEEN = "\\Seen"
DRAFT = "\\Draft"
SYSTEM_FLAGS = (ANSWERED, FLAGGED, DELETED, SEEN, DRAFT)
# Maildir's P ("passed") is what mail clients call $Forwarded.
FORWARDED = "$Forwarded"

INFO_SEPARATOR = ":"
INFO_PREFIX = ":2,"

_LETTER = {DRAFT: "D", FLAGGED: "F", ANSWERED: "R", SEEN: "S", DELETED: "T"}
_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
FLAG_OF_LETTER = {letter: flag for flag, letter in _LETTER.items()} | {"P": FORWARDED}
SYSTEM_LETTERS = frozenset(FLAG_OF_LETTER)
# IMAP atom-specials and what would break a dovecot-keywords line.
_KEYWORD_FORBIDDEN = set('(){ %*"\\]') | {chr(c) for c in range(0x21)} | {"\x7f"}

SEEN_LETTER = "S"
DELETED_LETTER = "T"


def split_filename(filename: str) -> tuple[str, str]:
    """('base', ':2,FS') from 'base:2,FS'; the suffix is '' when there is no info."""
    base, sep, info = filename.partition(INFO_SEPARATOR)
    return base, (sep + info if sep else "")


def letters_of(suffix: str) -> str:
    """The flag letters of an info suffix (':2,FS' -> 'FS'); none for other info kinds."""
    return suffix[len(INFO_PREFIX) :] if suffix.startswith(INFO_PREFIX) else ""


def suffix_for(letters: Iterable[str]) -> str:
    """':2,' and the letters, sorted and each once, as Maildir wants them."""
    return INFO_PREFIX + "".join(sorted(set(letters)))


def canonical(flag: str) -> str:
    """A system flag in its usual spelling ('\\seen' -> '\\Seen'); a keyword as given.

    InvalidFlag for an unknown backslash flag (\\Recent is the session's, not
    stored) or a keyword that is empty or holds characters IMAP or the
    dovecot-keywords file cannot carry.
    """
    if not isinstance(flag, str) or not flag:
        raise InvalidFlag("empty flag")
    if flag.startswith("\\"):
        system = _SYSTEM_BY_LOWER.get(flag.lower())
        if system is None:
            raise InvalidFlag(f"{flag} cannot be stored")
        return system
    if any(c in _KEYWORD_FORBIDDEN or ord(c) >= 0x80 for c in flag):
        raise InvalidFlag(f"keyword {flag!r} has characters that are not allowed")
    return flag


def is_system(flag: str) -> bool:
    return flag in _LETTER


def system_letter(flag: str) -> str | None:
    return _LETTER.get(flag)


def decode(letters: str, keyword_of: dict[str, str]) -> frozenset[str]:
    """The flags a set of letters stands for, keyword letters looked up in keyword_of."""
    found = set()
    for c in letters:
        flag = FLAG_OF_LETTER.get(c) or keyword_of.get(c)
        if flag is not None:
            found.add(flag)
    return frozenset(found)
