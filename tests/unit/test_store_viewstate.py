"""Compact, shared view state: State against a dict model, and sharing between views."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mda.store import flags, maildir
from mda.store.mailstore import MailStore
from mda.store.viewstate import State

uid_sets = st.sets(st.integers(1, 60), max_size=30)
triples = st.lists(st.tuples(st.integers(1, 80), st.integers(0, 5), st.integers(1, 1 << 40)),
                   max_size=20)


def model_of(state: State) -> dict[int, tuple[int, int]]:
    return {u: (c, m) for u, c, m in zip(state.uids, state.codes, state.modseqs, strict=True)}


@given(initial=uid_sets, changes=triples, removals=uid_sets, probe=st.lists(st.integers(0, 90)))
def test_state_behaves_like_a_dict(initial: set[int], changes: list, removals: set[int],
                                   probe: list[int]) -> None:
    model = {u: (u % 3, u * 10) for u in initial}
    uids = sorted(initial)
    state = State.from_columns(uids, [model[u][0] for u in uids], [model[u][1] for u in uids])
    snap = state.publish(("e", 1, 1))
    frozen = model_of(State.of(snap))

    state.update(changes)
    for u, c, m in changes:
        model[u] = (c, m)
    assert model_of(state) == model
    assert list(state.uids) == sorted(model)

    present = sorted(set(model) & removals)
    seqs_expected = sorted((sorted(model).index(u) + 1 for u in present), reverse=True)
    removed, seqs = state.remove(removals)
    assert removed == present and seqs == seqs_expected
    for u in present:
        del model[u]
    assert model_of(state) == model

    # positions() finds what is there, in the order asked, whatever that order.
    expected = [(u, sorted(model).index(u)) for u in probe if u in model]
    assert list(state.positions(probe)) == expected
    assert all((state.get(u) == model.get(u)) for u in probe)
    # The published snapshot never changed.
    assert model_of(State.of(snap)) == frozen


def test_views_of_one_store_share_until_one_changes(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    maildir.ensure_maildir(root, [])
    for i in range(5):
        maildir.deliver(root, f"Subject: {i}\r\n\r\nbody\r\n".encode())
    with MailStore(root) as store, MailStore(root) as other:
        first = store.open_folder("INBOX")
        second = store.open_folder("INBOX")
        snap = store._syncs[""].snapshot
        assert first._state.is_of(snap) and second._state.is_of(snap)

        first.store([1, 2], [flags.FLAGGED], "add")
        # The change is first's alone until second asks for news.
        assert not first._state.is_of(snap)
        assert flags.FLAGGED not in second.flags(1)
        assert second.refresh().flags == [1, 2]
        assert flags.FLAGGED in second.flags(1)
        newest = store._syncs[""].snapshot
        assert newest is not snap and second._state.is_of(newest)
        first.refresh()
        assert first._state.is_of(newest)

        # A change from elsewhere (another process): each view reports it once.
        other.open_folder("INBOX").expunge([3], require_deleted=False)
        assert first.refresh().expunged == [3]
        assert second.refresh().expunged_seqs == [3]
        assert first._state.is_of(store._syncs[""].snapshot)
        assert second._state.is_of(store._syncs[""].snapshot)
        assert first.uids == second.uids == [1, 2, 4, 5]

        # An expunge a view may not report yet keeps it apart from the others.
        other.open_folder("INBOX").expunge([4], require_deleted=False)
        first.refresh(allow_expunge=False)
        second.refresh()
        assert first.uids == [1, 2, 4, 5] and first.is_expunged(4)
        assert second.uids == [1, 2, 5]
        assert not first._state.is_of(store._syncs[""].snapshot)
        assert first.refresh().expunged_seqs == [3]
        assert first._state.is_of(store._syncs[""].snapshot)
