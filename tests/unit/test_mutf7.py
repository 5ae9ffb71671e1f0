"""Modified UTF-7 mailbox names: RFC 3501 examples, strictness, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import mutf7 as utf7


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("", ""),
        ("&", "&-"),
        ("a&b&&", "a&-b&-&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        # RFC 3501 5.1.3's own example.
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("\U0001f600", "&2D3eAA-"),
        ("é&", "&AOk-&-"),
        ("tab\there", "tab&AAk-here"),
    ],
)
def test_known_encodings(name: str, wire: str) -> None:
    assert utf7.encode(name) == wire
    assert utf7.decode(wire) == name
    assert utf7.decode(wire.encode("ascii")) == name


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ("&", "never ended"),
        ("abc&U,BTFw", "never ended"),
        ("&Jjo!-", "not modified base64"),
        ("&U/BTFw-", "not modified base64"),  # '/' is ',' in modified base64
        ("&AGE-", "stands for itself"),  # 'a' must not be shifted
        ("&ACY-", "stands for itself"),  # '&' is written '&-'
        ("&AOk-&AOk-", "directly follows"),  # two shifts must be one
        ("&2D0-", "unpaired surrogate"),
        ("&AO-", "UTF-16 unit"),
        ("&AOl-", "padding bits"),
        ("caf\xe9", "not printable"),
        ("a\x00b", "not printable"),
        ("a\tb", "not printable"),
    ],
)
def test_strict_decoding(wire: str, why: str) -> None:
    with pytest.raises(utf7.UTF7Error, match=why):
        utf7.decode(wire)


def test_error_is_a_value_error() -> None:
    assert issubclass(utf7.UTF7Error, ValueError)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(utf7.UTF7Error):
        utf7.encode("bad\udc80")


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(names)
def test_round_trip(name: str) -> None:
    wire = utf7.encode(name)
    assert wire.isascii()
    assert all(0x20 <= ord(c) < 0x7F for c in wire)
    assert utf7.decode(wire) == name


@given(st.text(st.sampled_from("&-AZaz09+,/é!"), max_size=20))
def test_decode_accepts_only_canonical_forms(wire: str) -> None:
    try:
        name = utf7.decode(wire)
    except utf7.UTF7Error:
        return
    assert utf7.encode(name) == wire


@given(st.binary(max_size=30))
def test_decode_never_fails_otherwise(raw: bytes) -> None:
    try:
        utf7.decode(raw)
    except utf7.UTF7Error:
        pass
