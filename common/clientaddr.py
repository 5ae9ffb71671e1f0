"""What one client is, by its address: the rule the connection caps, the auth
penalty and the plaintext-on-loopback switches share.

An IPv4 address is one client. An IPv6 host is usually handed a whole
prefix, and would otherwise have 2**64 addresses or more to spread its
connections or guesses over, so IPv6 clients are counted by a prefix; each
caller picks the length its model server uses (Postfix counts connections
by /84, Dovecot's auth penalty by /48). An IPv4-mapped IPv6 address is its
IPv4 address. Anything that is not an address (a Unix socket's "local") is
itself.
"""

from __future__ import annotations

import ipaddress


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_key(address: str, ipv6_prefix: int) -> str:
    """The client `address` belongs to: itself, or its IPv6 prefix."""
    ip = _ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


def is_loopback(address: str) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_loopback
