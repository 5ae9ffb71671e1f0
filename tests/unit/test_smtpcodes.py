"""common/smtpcodes.py: enhanced status codes added to replies that lack one."""

import pytest

from common.smtpcodes import is_positive, is_transient, with_enhanced


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("503 Error: need RCPT command", "503 5.5.1 Error: need RCPT command"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("235 Authentication successful", "235 2.7.0 Authentication successful"),
        ("535 Authentication credentials invalid",
         "535 5.7.8 Authentication credentials invalid"),
        ("550 No such user", "550 5.1.1 No such user"),
        ("552 Too much mail data", "552 5.3.4 Too much mail data"),
        ("451 Try again later", "451 4.3.0 Try again later"),
        ("421 Closing", "421 4.3.0 Closing"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        # A continuation line keeps its dash.
        ("250-First line", "250-2.0.0 First line"),
        # A bare code gets its enhanced code and no trailing space.
        ("250", "250 2.0.0"),
    ],
)
def test_adds_the_enhanced_code(reply: str, expected: str) -> None:
    assert with_enhanced(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "250 2.1.0 Sender OK",  # already has one
        "550 5.7.1 Relaying denied",
        "452-4.5.3 Too many recipients",
        "220 mail.example.test ESMTP",  # the greeting never carries one
        "354 End data with <CR><LF>.<CR><LF>",
        "334 VXNlcm5hbWU6",
        "599 Unknown code",  # no default for it
        "abc def",
        "",
        "25",
    ],
)
def test_leaves_alone(reply: str) -> None:
    assert with_enhanced(reply) == reply


def test_a_text_that_looks_like_a_code_is_not_one() -> None:
    # "2.0" alone is not an enhanced code: it needs three parts.
    assert with_enhanced("250 2.0 ok") == "250 2.0.0 2.0 ok"


def test_idempotent() -> None:
    once = with_enhanced("503 Error: need MAIL command")
    assert with_enhanced(once) == once


def test_reply_classes() -> None:
    assert is_positive("250 2.0.0 OK")
    assert not is_positive("451 4.3.0 later")
    assert is_transient("451 4.3.0 later")
    assert not is_transient("550 5.1.1 no")
    assert not is_transient("250 OK")
