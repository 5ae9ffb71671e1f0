"""The control-character rule for SMTP/LMTP command arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.smtpargs import control_character, refusal


@pytest.mark.parametrize(("arg", "name"), [
    ("a\rb", "CR"), ("a\nb", "LF"), ("\x00", "NUL"), ("a\tb", "TAB"), ("x\x7f", "DEL"),
    ("<a@b>\x1b[31m", "0x1B"), ("\x01\r", "0x01"),
])
def test_each_control_character_is_named(arg, name):
    assert control_character(arg) == name


@pytest.mark.parametrize("arg", [None, "", "client.example", "[192.0.2.1]",
                                 "FROM:<\"a b\"@example.org> SIZE=10 BODY=8BITMIME",
                                 "TO:<jürgen@example.org>", "\udcff\u0085"])
def test_clean_arguments_pass(arg):
    assert control_character(arg) is None
    assert refusal("MAIL", arg) is None


def test_the_reply():
    assert refusal("EHLO", "a\rX: y") == "501 5.5.2 Syntax error: control character (CR) in EHLO"


@given(st.text())
def test_refused_exactly_when_a_c0_control_or_del_is_in_the_argument(arg):
    bad = any(c < " " or c == "\x7f" for c in arg)
    assert (control_character(arg) is not None) == bad
    assert (refusal("RCPT", arg) is not None) == bad
