"""The rules of one IMAP session over the store: states, login, selecting, updates.

Commands on mailboxes live in mailboxes.py, commands on messages in
messages.py; each is an async generator of response lines. The store
blocks (files, SQLite), so it is always called through `run()`, in a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import log
from common.config import Config
from mda.imap import commands as C
from mda.imap import prelogin
from mda.imap import response as R
from mda.imap.events import LiteralTooLarge
from mda.imap.parser import Limits
from mda.imap.watch import Watchers
from mda.store import errors as E
from mda.store.folder import Folder
from mda.store.maildir import maildir_path
from mda.store.mailstore import MailStore

if TYPE_CHECKING:
    from mda.imap.server import Connection

FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


# The store blocks (files, SQLite), so its calls run in threads. One pool for
# the process, larger than asyncio's default (cores + 4), so that the users at
# their cap (limits.store_threads_per_user) leave threads for everyone else.
STORE_THREADS = 32
_POOL = concurrent.futures.ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="imap-store")


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn in a thread of the store pool, with this task's context (log bindings),
    as asyncio.to_thread does with the default pool."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)


class UserShare:
    """What one user's sessions in this process share: the MailStore, and the
    number of its calls that may run at once, so that one user's searches
    cannot take every thread while another user's STATUS waits."""

    def __init__(self, threads: int) -> None:
        self.store: MailStore | None = None
        self.sessions = 0
        self.opening = asyncio.Lock()  # two logins at once open one store
        self.slots = asyncio.Semaphore(threads)


class Shared:
    """The UserShare of each user with a session in this process."""

    def __init__(self) -> None:
        self.users: dict[str, UserShare] = {}

    async def acquire(self, user: str, threads: int,
                      open_store: Callable[[], MailStore]) -> UserShare:
        share = self.users.get(user)
        if share is None:
            share = self.users[user] = UserShare(threads)
        share.sessions += 1
        try:
            async with share.opening:
                if share.store is None:
                    share.store = await in_thread(open_store)
        except BaseException:
            self.release(user)
            raise
        return share

    def release(self, user: str) -> MailStore | None:
        """The store to close when the user's last session went, else None."""
        share = self.users[user]
        share.sessions -= 1
        if share.sessions:
            return None
        del self.users[user]
        return share.store


SHARED = Shared()


class Session:
    def __init__(self, cfg: Config, watchers: Watchers, conn: Connection) -> None:
        self.cfg = cfg
        self.watchers = watchers
        self.conn = conn
        self.user: str | None = None
        self.store: MailStore | None = None
        self.share: UserShare | None = None
        self.folder: Folder | None = None
        self.readonly = False
        self.condstore = False
        # Set when the answer just given ends the connection (its last line a BYE).
        self.closing = False
        self.log = log.get().bind(client=conn.peer)
        self._tables()

    def _tables(self) -> None:
        from mda.imap import mailboxes, messages

        def bound(table: dict) -> dict:
            return {k: functools.partial(f, self) for k, f in table.items()}
        self.any_state = {C.Capability: self.capability, C.Noop: self.noop, C.Id: self.id_}
        self.authenticated = {C.Select: self.select, C.Enable: self.enable,
                              C.Namespace: self.namespace, **bound(mailboxes.HANDLERS)}
        self.selected = {C.Close: self.close_cmd, C.Unselect: self.unselect,
                         C.Check: self.noop, **bound(messages.HANDLERS)}

    # -- plumbing ------------------------------------------------------------

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) in a store thread, within the user's share of them."""
        if self.share is None:
            return await in_thread(fn, *args, **kwargs)
        async with self.share.slots:
            return await in_thread(fn, *args, **kwargs)

    def capabilities(self) -> list[str]:
        return prelogin.capabilities_after_login(self.cfg.mta.max_message_size)

    def literal_limits(self) -> Limits:
        """What the command reader may take in literals once logged in."""
        return Limits(max_literal=self.cfg.mta.max_message_size)

    def literal_refusal(self, ev: LiteralTooLarge) -> tuple[list[bytes], bool]:
        """The answer to a literal over `literal_limits()`, and whether the
        connection then closes: it does after a non-synchronizing literal,
        whose bytes are on their way and are never read."""
        sync = ev.synchronizing
        if ev.command == "APPEND":
            out = [R.no(ev.tag, "Message too large", R.code("TOOBIG"))]
        elif sync:
            out = [R.no(ev.tag, "Literal too large", R.code("TOOBIG"))]
        else:
            out = [R.bad(ev.tag, "Literal too large")]
        if sync:
            return out, False
        if ev.tag is None:
            out = []  # the command it belonged to was answered already
        return [*out, R.bye("Literal too large, closing the connection")], True

    def idle_problem(self, cmd: C.Idle) -> bytes | None:
        if not self.user:
            return R.bad(cmd.tag, "Log in first")
        return None

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self.folder is None:
            return lambda: None
        # watch_paths: new/, cur/, the uidlist; their parent is the folder.
        return self.watchers.subscribe(Path(self.folder.watch_paths()[0]).parent, callback)

    async def updates(self, allow_expunge: bool = True) -> list[bytes]:
        """Untagged news of the selected folder since the last command."""
        folder = self.folder
        if folder is None:
            return []
        changes = await self.run(folder.refresh, allow_expunge=allow_expunge)
        if not changes:
            return []
        out = [R.data(str(seq).encode(), b"EXPUNGE") for seq in changes.expunged_seqs]
        if changes.gone or changes.uidvalidity_changed:
            self.folder = None
            return [*out, R.bye("The selected mailbox was deleted or replaced")]
        if changes.added:
            out.append(R.data(str(len(folder)).encode(), b"EXISTS"))
            out.append(R.data(str(folder.recent_count).encode(), b"RECENT"))
        for uid in changes.flags:
            seq = folder.seq_of(uid)
            if seq is None:
                continue
            out.append(self.flags_response(seq, uid))
        return out

    def flags_response(self, seq: int, uid: int, with_uid: bool = True) -> bytes:
        assert self.folder is not None
        items: list[tuple[str, bytes]] = [("FLAGS", self.flag_list(uid))]
        if with_uid:
            items.append(("UID", str(uid).encode()))
        if self.condstore:
            items.append(("MODSEQ", f"({self.folder.modseq(uid)})".encode()))
        return R.fetch(seq, items)

    def flag_list(self, uid: int) -> bytes:
        assert self.folder is not None
        flags = sorted(self.folder.flags(uid))
        if self.folder.is_recent(uid):
            flags.append("\\Recent")
        return R.flag_list(flags)

    async def close(self) -> None:
        if self.folder is not None:
            folder, self.folder = self.folder, None
            await self.run(folder.close)
        if self.user and self.share is not None:
            self.share = None
            store = SHARED.release(self.user)
            if store is not None:
                await in_thread(store.close)
        self.store = None

    # -- dispatch ------------------------------------------------------------

    async def execute(self, cmd: C.Command) -> AsyncIterator[bytes]:
        kind = type(cmd)
        if kind in self.any_state:
            handler = self.any_state[kind]
        elif kind is C.Login:
            yield R.bad(cmd.tag, "Already logged in")
            return
        elif kind in self.authenticated or kind in self.selected:
            if not self.user:
                yield R.bad(cmd.tag, "Log in first")
                return
            if kind in self.selected and self.folder is None:
                yield R.bad(cmd.tag, "Select a mailbox first")
                return
            handler = self.authenticated.get(kind) or self.selected[kind]
        else:
            yield R.bad(cmd.tag, f"{cmd.name} is not available here")
            return
        try:
            async for out in handler(cmd):
                yield out
        except E.InvalidName as e:
            yield R.no(cmd.tag, str(e) or "Invalid mailbox name", R.code("CANNOT"))
        except E.NoSuchFolder:
            yield R.no(cmd.tag, "No such mailbox", R.code("NONEXISTENT"))
        except E.LockTimeout:
            yield R.no(cmd.tag, "Mailbox is busy, try again", R.code("INUSE"))

    # -- commands of any state -------------------------------------------------

    async def capability(self, cmd: C.Command) -> AsyncIterator[bytes]:
        yield R.data(b"CAPABILITY", *(c.encode() for c in self.capabilities()))
        yield R.ok(cmd.tag, "CAPABILITY completed")

    async def noop(self, cmd: C.Command) -> AsyncIterator[bytes]:
        for out in await self.updates():
            yield out
        yield R.ok(cmd.tag, f"{cmd.name} completed")

    async def id_(self, cmd: C.Id) -> AsyncIterator[bytes]:
        yield prelogin.id_response()
        yield R.ok(cmd.tag, "ID completed")

    # -- logging in ------------------------------------------------------------

    async def begin(self, tag: str, account: str) -> bytes:
        """Start the session of a user the login process authenticated: the
        tagged OK of its LOGIN, or the refusal it hands back to the client
        (self.user stays None then)."""
        if not self.conn.admit_user(account):  # the server closes after this BYE
            return prelogin.USER_LIMIT
        root = maildir_path(self.cfg.paths.mail, account)
        folders = self.cfg.mda.folders
        self.share = await SHARED.acquire(account, self.cfg.limits.store_threads_per_user,
                                          lambda: MailStore(root, default_folders=folders,
                                                            user=account))
        self.store = self.share.store
        self.user = account
        self.log = self.log.bind(user=account)
        self.log.info("logged in")
        return prelogin.logged_in(tag, self.cfg.mta.max_message_size)

    # -- authenticated state ------------------------------------------------------

    async def enable(self, cmd: C.Enable) -> AsyncIterator[bytes]:
        enabled = [c for c in cmd.capabilities if c.upper() == "CONDSTORE"]
        if enabled:
            self.condstore = True
        yield R.data(b"ENABLED", *(c.upper().encode() for c in enabled))
        yield R.ok(cmd.tag, "ENABLE completed")

    async def namespace(self, cmd: C.Namespace) -> AsyncIterator[bytes]:
        yield R.data(b"NAMESPACE", b'(("" "/"))', b"NIL", b"NIL")
        yield R.ok(cmd.tag, "NAMESPACE completed")

    async def select(self, cmd: C.Select) -> AsyncIterator[bytes]:
        if self.folder is not None:
            old, self.folder = self.folder, None
            await self.run(old.close)
            yield R.ok(None, "Previous mailbox closed", R.code("CLOSED"))
        assert self.store is not None
        if cmd.condstore:
            self.condstore = True
        folder = await self.run(self.store.open_folder, cmd.mailbox, readonly=cmd.readonly)
        self.folder, self.readonly = folder, cmd.readonly
        keywords = await self.run(lambda: folder.keywords)
        flags = [*FLAGS, *keywords]
        yield R.data(b"FLAGS", R.flag_list(flags))
        yield R.data(str(len(folder)).encode(), b"EXISTS")
        yield R.data(str(folder.recent_count).encode(), b"RECENT")
        unseen = await self.run(folder.unseen_uids)
        if unseen:
            seq = folder.seq_of(unseen[0])
            yield R.ok(None, "First unseen", R.code("UNSEEN", seq))
        yield R.ok(None, "UIDs valid", R.code("UIDVALIDITY", folder.uidvalidity))
        yield R.ok(None, "Predicted next UID", R.code("UIDNEXT", folder.uidnext))
        permanent = [] if cmd.readonly else [*flags, "\\*"]
        yield R.ok(None, "Flags permitted",
                   R.code("PERMANENTFLAGS", R.flag_list(permanent).decode()))
        yield R.ok(None, "Highest", R.code("HIGHESTMODSEQ", folder.highestmodseq))
        mode = "READ-ONLY" if cmd.readonly else "READ-WRITE"
        yield R.ok(cmd.tag, f"{cmd.name} completed", R.code(mode))

    # -- selected state ------------------------------------------------------------

    async def close_cmd(self, cmd: C.Close) -> AsyncIterator[bytes]:
        folder, self.folder = self.folder, None
        assert folder is not None
        if not self.readonly:
            # CLOSE expunges silently (RFC 3501 6.4.2).
            await self.run(folder.expunge)
        await self.run(folder.close)
        yield R.ok(cmd.tag, "CLOSE completed")

    async def unselect(self, cmd: C.Unselect) -> AsyncIterator[bytes]:
        folder, self.folder = self.folder, None
        assert folder is not None
        await self.run(folder.close)
        yield R.ok(cmd.tag, "UNSELECT completed")
