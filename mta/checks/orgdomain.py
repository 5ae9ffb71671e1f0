"""The organisational domain (RFC 7489 3.2): the Public Suffix List's rule.

The organisational domain of a name is its public suffix plus one label
(example.co.uk for mail.example.co.uk). The list comes with the
`publicsuffixlist` package, which ships the data file and is re-released
as the list changes; upgrading the package updates the list. We use its
ICANN and private sections both, as OpenDMARC does. A name the list does not
know ends in a suffix of one label (its default rule "*"): x.y.example.test
gives example.test. A name that is itself a public suffix is its own
organisational domain.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList

__all__ = ["aligned", "organisational_domain"]


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # parses the bundled list once per process


def organisational_domain(name: str) -> str:
    name = name.rstrip(".").lower()
    return _psl().privatesuffix(name) or name


def aligned(identifier: str, from_domain: str, strict: bool) -> bool:
    """DMARC identifier alignment (RFC 7489 3.1): same name, or same organisational domain."""
    a, b = identifier.rstrip(".").lower(), from_domain.rstrip(".").lower()
    if strict or a == b:
        return a == b
    return organisational_domain(a) == organisational_domain(b)
