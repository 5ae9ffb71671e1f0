"""Random sequences of sessions, deliveries and other programs against a simple model.

Two sessions (each its own MailStore, as IMAP connections in two
processes) and a third that shares the first one's MailStore (two
connections of one user in one process, whose views share their arrays
until one changes: viewstate.py) work on INBOX while mail arrives and
other programs rename and delete files; the index is now and then
deleted. After every step a fresh MailStore must show exactly the model's
messages and flags, every UID must still belong to the message it was
first given to, and new UIDs must be above all earlier ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mda.store import flags, maildir, uidlist
from mda.store.index import FILE
from mda.store.mailstore import MailStore

FLAGS = [flags.SEEN, flags.FLAGGED, flags.DELETED, flags.ANSWERED, "todo", "$Junk"]
flag_sets = st.sets(st.sampled_from(FLAGS), max_size=3)


def message(ident: int) -> bytes:
    return f"X-Id: {ident}\r\n\r\nbody\r\n".encode()


def ident_of(data: bytes) -> int:
    return int(data.split(b"\n", 1)[0].split(b":")[1])


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.root = self.tmp / "Maildir"
        maildir.ensure_maildir(self.root, ["Archive"])
        self.sessions = [MailStore(self.root), MailStore(self.root)]
        self.views = [s.open_folder("INBOX") for s in self.sessions]
        self.views.append(self.sessions[0].open_folder("INBOX"))
        self.inbox: dict[int, set[str]] = {}  # ident -> flags
        self.archive: list[tuple[int, frozenset[str]]] = []
        self.next_ident = 1
        self.uid_owner: dict[int, int] = {}  # uid -> ident, for all time
        self.max_uid = 0

    def teardown(self) -> None:
        for s in self.sessions:
            s.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ----------------------------------------------------------

    def ident(self) -> int:
        self.next_ident += 1
        return self.next_ident - 1

    def actual(self) -> dict[int, tuple[int, frozenset[str]]]:
        """uid -> (ident, flags) as a fresh session sees INBOX."""
        with MailStore(self.root) as fresh:
            view = fresh.open_folder("INBOX", readonly=True)
            return {u: (ident_of(view.read(u)), view.flags(u)) for u in view.uids}

    def uid_of(self, ident: int) -> int:
        return next(u for u, (i, _) in self.actual().items() if i == ident)

    def file_of(self, ident: int) -> Path:
        for sub in ("cur", "new"):
            for name in os.listdir(self.root / sub):
                if ident_of((self.root / sub / name).read_bytes()) == ident:
                    return self.root / sub / name
        raise AssertionError(f"no file for {ident}")

    # -- what arrives --------------------------------------------------------

    @rule()
    def deliver(self) -> None:
        ident = self.ident()
        maildir.deliver(self.root, message(ident))
        self.inbox[ident] = set()

    @rule(secs=st.integers(1_000_000_000, 2_000_000_000))
    def copy_into_new(self, secs: int) -> None:
        ident = self.ident()
        (self.root / "new" / f"{secs}.M{ident}P1.cp").write_bytes(message(ident))
        self.inbox[ident] = set()

    @rule(who=st.integers(0, 2), wanted=flag_sets)
    def append(self, who: int, wanted: set[str]) -> None:
        ident = self.ident()
        self.sessions[who % 2].append("INBOX", message(ident), wanted)
        self.inbox[ident] = set(wanted)

    # -- what sessions do ---------------------------------------------------

    @precondition(lambda self: self.inbox)
    @rule(who=st.integers(0, 2), data=st.data(), wanted=flag_sets,
          mode=st.sampled_from(["add", "remove", "replace"]))
    def store(self, who: int, data, wanted: set[str], mode: str) -> None:
        idents = data.draw(st.lists(st.sampled_from(sorted(self.inbox)), max_size=4))
        uids = [self.uid_of(i) for i in idents]
        self.views[who].store(uids, wanted, mode)
        for i in idents:
            if mode == "add":
                self.inbox[i] |= wanted
            elif mode == "remove":
                self.inbox[i] -= wanted
            else:
                self.inbox[i] = set(wanted)

    @rule(who=st.integers(0, 2), wanted=flag_sets, mode=st.sampled_from(["add", "remove"]))
    def store_all_shown(self, who: int, wanted: set[str], mode: str) -> None:
        """STORE 1:* on what the session shows, some of it perhaps expunged meanwhile."""
        view = self.views[who]
        actual = self.actual()
        result = view.store(view.uids, wanted, mode)
        assert set(result.missing) == {u for u in view.uids if u not in actual}
        for uid in view.uids:
            if uid in actual:
                ident = actual[uid][0]
                if mode == "add":
                    self.inbox[ident] |= wanted
                else:
                    self.inbox[ident] -= wanted

    @rule(who=st.integers(0, 2), allow=st.booleans())
    def refresh(self, who: int, allow: bool) -> None:
        view = self.views[who]
        view.refresh(allow_expunge=allow)
        if allow:
            actual = self.actual()
            assert view.uids == sorted(actual)
            assert all(view.flags(u) == f for u, (_, f) in actual.items())

    @rule(who=st.integers(0, 2))
    def expunge(self, who: int) -> None:
        view = self.views[who]
        actual = self.actual()
        shown = {actual[u][0] for u in view.uids if u in actual}
        view.expunge()
        for ident in list(self.inbox):
            if ident in shown and flags.DELETED in self.inbox[ident]:
                del self.inbox[ident]

    @precondition(lambda self: self.inbox)
    @rule(who=st.integers(0, 2), data=st.data(), move=st.booleans())
    def copy_or_move(self, who: int, data, move: bool) -> None:
        idents = data.draw(st.lists(st.sampled_from(sorted(self.inbox)), max_size=3,
                                    unique=True))
        uids = [self.uid_of(i) for i in idents]
        view = self.views[who]
        result = view.move(uids, "Archive") if move else view.copy(uids, "Archive")
        assert [s for s, _ in result.pairs] == sorted(uids)
        for i in idents:
            self.archive.append((i, frozenset(self.inbox[i])))
            if move:
                del self.inbox[i]

    # -- what other programs do -------------------------------------------

    @precondition(lambda self: self.inbox)
    @rule(data=st.data())
    def mutt_marks_seen(self, data) -> None:
        ident = data.draw(st.sampled_from(sorted(self.inbox)))
        path = self.file_of(ident)
        base, _, info = path.name.partition(":")
        letters = set(info[2:]) | {"S"}
        os.rename(path, self.root / "cur" / f"{base}:2,{''.join(sorted(letters))}")
        self.inbox[ident].add(flags.SEEN)

    @precondition(lambda self: self.inbox)
    @rule(data=st.data())
    def someone_deletes_a_file(self, data) -> None:
        ident = data.draw(st.sampled_from(sorted(self.inbox)))
        os.unlink(self.file_of(ident))
        del self.inbox[ident]

    @rule()
    def lose_the_index(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            path = self.root / (FILE + suffix)
            if path.exists():
                os.unlink(path)

    @rule(who=st.integers(0, 2))
    def reconnect(self, who: int) -> None:
        if who < 2:
            self.sessions[who].close()
            self.sessions[who] = MailStore(self.root)
            self.views[who] = self.sessions[who].open_folder("INBOX")
        if who != 1:
            self.views[2] = self.sessions[0].open_folder("INBOX")

    # -- what must hold ---------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        actual = self.actual()
        assert sorted(i for i, _ in actual.values()) == sorted(self.inbox)
        for uid, (ident, shown) in actual.items():
            assert shown == self.inbox[ident], (uid, ident)
            owner = self.uid_owner.setdefault(uid, ident)
            assert owner == ident, f"UID {uid} moved from message {owner} to {ident}"
        new = [u for u in actual if u > self.max_uid]
        assert all(u not in self.uid_owner or self.uid_owner[u] == actual[u][0] for u in new)
        self.max_uid = max([self.max_uid, *actual])
        parsed = uidlist.parse((self.root / uidlist.NAME).read_bytes())
        assert parsed is not None
        assert sorted(parsed[0].records) == sorted(actual)
        with MailStore(self.root) as fresh:
            archive = fresh.open_folder("Archive", readonly=True)
            shown_archive = sorted((ident_of(archive.read(u)), archive.flags(u))
                                   for u in archive.uids)
        def key(item: tuple[int, frozenset[str]]) -> tuple[int, list[str]]:
            return item[0], sorted(item[1])

        assert sorted(shown_archive, key=key) == sorted(self.archive, key=key)


StoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreModel = StoreMachine.TestCase
