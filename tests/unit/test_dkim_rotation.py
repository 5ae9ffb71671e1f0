"""The rotation state machine (mta/dkim/rotation.py), its DNS answers given."""

from __future__ import annotations

import pytest

from mta.dkim import keys, rotation

D = "example.org"


def test_every_step_waits_for_its_condition(tmp_path):
    keys.generate(tmp_path, D, "a", algorithms=("ed25519",))
    rot = rotation.start(tmp_path, D, "b", keep_days=2, now=1000)
    assert (rot.step, rot.old, rot.new) == ("publish", "a", "b")
    assert rotation.active_selector(tmp_path, D) == "a"
    assert rotation.load(tmp_path, D) == rot

    same, says = rotation.advance(tmp_path, rot, 2000, new_seen=False, old_gone=False)
    assert same == rot and "step 1 of 3" in says[0]
    # Both algorithms' names, each its own (keys.txt_name).
    assert "b-ed25519._domainkey.example.org and b._domainkey.example.org" in says[0]
    rot, says = rotation.advance(tmp_path, rot, 3000, new_seen=True, old_gone=False)
    assert (rot.step, rot.since) == ("signing", 3000)
    assert rotation.active_selector(tmp_path, D) == "b"
    same, _ = rotation.advance(tmp_path, rot, 3000 + 2 * 86400 - 1, True, True)
    assert same.step == "signing"  # the old record stays until keep_days are over
    rot, says = rotation.advance(tmp_path, rot, 3000 + 2 * 86400, True, False)
    assert rot.step == "retire" and "remove the TXT records a-ed25519._domainkey.example.org " \
        "and a._domainkey.example.org" in says[0]
    assert keys.selectors(tmp_path, D) == ["a", "b"]
    done, says = rotation.advance(tmp_path, rot, 9e9, True, True)
    assert done is None and "done" in says[0]
    assert keys.selectors(tmp_path, D) == ["b"]


def test_a_first_key_needs_no_retirement(tmp_path):
    rot = rotation.start(tmp_path, D, "first", keep_days=7, now=0)
    assert rot.old is None
    done, says = rotation.advance(tmp_path, rot, 1, new_seen=True, old_gone=True)
    assert done is None and rotation.active_selector(tmp_path, D) == "first"


def test_refusals_and_a_damaged_state(tmp_path):
    keys.generate(tmp_path, D, "a", algorithms=("ed25519",))
    with pytest.raises(rotation.RotationError, match="in use"):
        rotation.start(tmp_path, D, "a", keep_days=1)
    rotation.start(tmp_path, D, "b", keep_days=1)
    with pytest.raises(rotation.RotationError, match="under way"):
        rotation.start(tmp_path, D, "c", keep_days=1)
    (tmp_path / D / "rotation.json").write_text("{not json")
    with pytest.raises(rotation.RotationError, match="damaged"):
        rotation.load(tmp_path, D)
