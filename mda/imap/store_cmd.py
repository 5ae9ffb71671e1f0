"""STORE and UID STORE (RFC 3501 6.4.6; RFC 7162 3.1.3 UNCHANGEDSINCE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mda.imap import commands as C
from mda.imap import response as R
from mda.imap.msgset import InvalidSequence, Target, flag_list, guarded, number_set, resolve
from mda.store.folder import Folder
from mda.store.results import StoreResult

if TYPE_CHECKING:
    from mda.imap.session import Session

MODES = {C.StoreMode.ADD: "add", C.StoreMode.REMOVE: "remove", C.StoreMode.REPLACE: "replace"}


@dataclass
class Stored:
    responses: list[bytes]
    modified: list[int]  # seqs (STORE) or UIDs (UID STORE) that failed UNCHANGEDSINCE
    missing: int  # messages expunged by someone else meanwhile


def apply_store(folder: Folder, cmd: C.Store, condstore: bool) -> Stored:
    targets = resolve(folder, cmd.sequence, uid=cmd.uid)
    result = folder.store([u for _, u in targets], cmd.flags, MODES[cmd.mode],
                          unchangedsince=cmd.unchangedsince)
    modified = set(result.modified)
    return Stored(_responses(folder, cmd, targets, result, condstore),
                  [(u if cmd.uid else s) for s, u in targets if u in modified],
                  len(result.missing))


def _responses(folder: Folder, cmd: C.Store, targets: list[Target], result: StoreResult,
               condstore: bool) -> list[bytes]:
    skip = set(result.modified) | set(result.missing)
    shown = [(s, u) for s, u in targets if u not in skip]
    if cmd.silent:
        if not condstore:
            return []
        # RFC 7162 3.1.3: under CONDSTORE a changed message is reported even
        # with .SILENT, for its new MODSEQ.
        shown = [(s, u) for s, u in shown if u in result.changed]
    flags = folder.flags_of([u for _, u in shown])
    out = []
    for seq, uid in shown:
        if uid not in flags:
            continue
        items: list[tuple[str, bytes]] = []
        if not cmd.silent:
            items.append(("FLAGS", flag_list(flags[uid], folder.is_recent(uid))))
        if cmd.uid:
            items.append(("UID", b"%d" % uid))
        if condstore:
            items.append(("MODSEQ", b"(%d)" % folder.modseq(uid)))
        out.append(R.fetch(seq, items))
    return out


@guarded
async def store(session: Session, cmd: C.Store) -> AsyncIterator[bytes]:
    if session.readonly:
        yield R.no(cmd.tag, "The mailbox is open read-only (EXAMINE)")
        return
    # No EXPUNGE may be sent during STORE by sequence number (RFC 3501 7.4.1).
    for out in await session.updates(allow_expunge=cmd.uid):
        yield out
    folder = session.folder
    if folder is None:
        yield R.no(cmd.tag, "The mailbox is gone")
        return
    if cmd.unchangedsince is not None:
        session.condstore = True  # a CONDSTORE enabling command (RFC 7162 3.1)
    try:
        done = await session.run(apply_store, folder, cmd, session.condstore)
    except InvalidSequence as e:
        yield R.bad(cmd.tag, str(e))
        return
    if done.responses:
        yield b"".join(done.responses)
    if done.modified:
        yield R.ok(cmd.tag, "Some messages were changed since; they were left alone",
                   R.code("MODIFIED", number_set(done.modified)))
    elif done.missing:
        yield R.ok(cmd.tag, f"{cmd.name} completed; some messages were expunged meanwhile",
                   R.code("EXPUNGEISSUED"))
    else:
        yield R.ok(cmd.tag, f"{cmd.name} completed")
