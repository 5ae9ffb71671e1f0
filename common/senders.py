"""Which MAIL FROM a login may use on submission (Postfix reject_sender_login_mismatch).

A login owns: itself; itself with a +detail; every alias that reaches it
(an alias whose targets, followed to the end, include the login; a
catch-all "@domain" alias that reaches it counts too, as it does in
Postfix's smtpd_sender_login_maps). mta.send_as adds, per login, a list of
addresses, "@domain" for any address in that domain, or "*" for any at all.

The null sender `<>` is not checked, as Postfix does not check it
(smtpd_check.c applies reject_sender_login_mismatch only to a non-empty
sender): it names no one, and a client sending a bounce or a delivery
report uses it.
"""

from __future__ import annotations

from collections.abc import Iterable


def owns(login: str, sender: str, reaches: Iterable[str], send_as: Iterable[str]) -> bool:
    """Whether login may send as sender.

    Both are normalized addresses; reaches is where mail for sender goes
    (its local mailboxes); send_as is the login's mta.send_as list.
    """
    if sender == login or login in reaches:
        return True
    domain = sender.rpartition("@")[2]
    for allowed in send_as:
        allowed = allowed.strip().lower()
        if allowed == "*" or allowed == sender or allowed == "@" + domain:
            return True
    return False


def refusal(sender: str, login: str) -> str:
    """The reply a client sees, in Postfix's words."""
    return f"553 5.7.1 <{sender}>: Sender address rejected: not owned by user {login}"
