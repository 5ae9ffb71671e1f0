"""COPY, MOVE and EXPUNGE, with their UID forms (RFC 3501 6.4.3, 6.4.7;
RFC 4315 UIDPLUS; RFC 6851 MOVE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mda.imap import commands as C
from mda.imap import response as R
from mda.imap.msgset import InvalidSequence, guarded, number_set, resolve
from mda.store import errors as E
from mda.store.results import CopyResult

if TYPE_CHECKING:
    from mda.imap.session import Session


def _copyuid(result: CopyResult) -> str:
    # Pairs ascend by source UID and the new UIDs were given in that order,
    # so the two compressed sets still match element by element.
    return R.code("COPYUID", result.uidvalidity, number_set([s for s, _ in result.pairs]),
                  number_set([d for _, d in result.pairs]))


async def _expunged(session: Session, seqs: list[int]) -> AsyncIterator[bytes]:
    """`* n EXPUNGE` for our own removals (highest first, as the store gives
    them), then whatever else changed meanwhile."""
    if seqs:
        yield b"".join(R.data(seq, "EXPUNGE") for seq in seqs)
    for out in await session.updates():
        yield out


async def _transfer(session: Session, cmd: C.Copy | C.Move, move: bool
                    ) -> AsyncIterator[bytes]:
    folder, store = session.folder, session.store
    assert folder is not None and store is not None
    if move and session.readonly:
        yield R.no(cmd.tag, "The mailbox is open read-only (EXAMINE)")
        return
    try:
        targets = await session.run(resolve, folder, cmd.sequence, uid=cmd.uid)
    except InvalidSequence as e:
        yield R.bad(cmd.tag, str(e))
        return
    if not await session.run(store.folder_exists, cmd.mailbox):
        yield R.no(cmd.tag, "No such mailbox", R.code("TRYCREATE"))
        return
    if not targets:
        yield R.ok(cmd.tag, f"{cmd.name} completed; no messages matched")
        return
    uids = [u for _, u in targets]
    try:
        result = await session.run(folder.move if move else folder.copy, uids, cmd.mailbox)
    except E.NoSuchFolder:  # deleted in the meantime
        yield R.no(cmd.tag, "No such mailbox", R.code("TRYCREATE"))
        return
    if move:
        if result.pairs:
            # RFC 6851 4.3: COPYUID goes untagged, before the EXPUNGEs.
            yield R.ok(None, "Moved", _copyuid(result))
        async for out in _expunged(session, result.expunged_seqs):
            yield out
    else:
        for out in await session.updates():
            yield out
    if not result.pairs:
        yield R.no(cmd.tag, "The messages were expunged meanwhile", R.code("EXPUNGEISSUED"))
    elif move:
        yield R.ok(cmd.tag, f"{cmd.name} completed")
    elif result.missing:
        yield R.ok(cmd.tag, f"{cmd.name} completed, but some messages were expunged meanwhile",
                   _copyuid(result))
    else:
        yield R.ok(cmd.tag, f"{cmd.name} completed", _copyuid(result))


@guarded
async def copy(session: Session, cmd: C.Copy) -> AsyncIterator[bytes]:
    async for out in _transfer(session, cmd, move=False):
        yield out


@guarded
async def move(session: Session, cmd: C.Move) -> AsyncIterator[bytes]:
    async for out in _transfer(session, cmd, move=True):
        yield out


@guarded
async def expunge(session: Session, cmd: C.Expunge) -> AsyncIterator[bytes]:
    folder = session.folder
    assert folder is not None
    if session.readonly:
        yield R.no(cmd.tag, "The mailbox is open read-only (EXAMINE)")
        return
    uids = None
    if cmd.uids is not None:
        targets = await session.run(resolve, folder, cmd.uids, uid=True)
        uids = [u for _, u in targets]
    result = await session.run(folder.expunge, uids)
    async for out in _expunged(session, result.seqs):
        yield out
    yield R.ok(cmd.tag, f"{cmd.name} completed")
