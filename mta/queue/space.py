"""The spool's free-space reserve (Postfix's queue_minfree).

New mail is refused while the spool's filesystem has less than
`RESERVE_FACTOR` x max_message_size free, and a message announced with
SIZE= only if the reserve is still there once it is written. The reserve is
what the queue itself needs to go on: envelopes rewritten after every
round, and the DSNs it makes. Checked by the smtp process at MAIL FROM
(statvfs needs no right to the spool, only to reach it) and again by the
queue when it creates a message file.
"""

from __future__ import annotations

import os
from pathlib import Path

RESERVE_FACTOR = 1.5
NO_ROOM_REPLY = "452 4.3.1 Insufficient system storage, try again later"


def reserve(max_message_size: int) -> int:
    return int(RESERVE_FACTOR * max_message_size)


def free_bytes(path: Path) -> int:
    """What an unprivileged process may still write there (root's reserved blocks not counted)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fits(path: Path, max_message_size: int, size: int = 0) -> bool:
    """Whether a message of size bytes leaves the reserve free; True when it cannot be told."""
    try:
        free = free_bytes(path)
    except OSError:
        return True  # a spool we cannot stat fails later, with its own error
    return free - max(size, 0) >= reserve(max_message_size)


def refusal(path: Path, max_message_size: int, size: int = 0) -> str | None:
    return None if fits(path, max_message_size, size) else NO_ROOM_REPLY
