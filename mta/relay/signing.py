"""DKIM signing of the mail the relay sends to other domains.

The queue says which messages may be signed (submitted by an authenticated
user, or our own DSNs and delay warnings); this module picks the key and
puts the signatures on top. The domain is that of the RFC 5322 From
address, or, when it has no key, the nearest parent domain that has one
(a DSN comes from MAILER-DAEMON@<hostname>, signed by the mail domain):
under DMARC's relaxed alignment a parent domain's signature aligns.

The key dir is looked at on every delivery (the `active` file and a stat of
each key file: cheap next to an SMTP transaction), and a key is parsed again
only when its file changed (path, inode and ctime: a rewrite, a rename into
place, a chmod), so keys made or fixed while mtad runs are used at once.

Nothing here may lose or delay mail: an unsafe or broken key, or a message
dkimpy cannot sign, is logged and the message goes out unsigned.
"""

from __future__ import annotations

import os
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from common.msgheader import Header
from mta.dkim import keys, rotation, sign
from mta.dkim.keys import DKIMKey, DKIMKeyError

__all__ = ["Signer", "from_domain", "candidate_domains"]


def from_domain(message: bytes) -> str | None:
    """The domain of the first From address, lower case; None without one."""
    values = Header.of(message).values("from")
    if not values:
        return None
    text = values[0].decode("utf-8", "replace")
    for _, addr in getaddresses([text]):
        domain = addr.rpartition("@")[2].strip().rstrip(".").lower()
        if "@" in addr and domain:
            return domain
    return None


def candidate_domains(domain: str) -> list[str]:
    """The domain, then each parent of at least two labels (never a TLD)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


class Signer:
    def __init__(self, keydir: Path) -> None:
        self.keydir = Path(keydir)
        # (domain, selector) -> (the files' identities, the keys loaded from them)
        self._cache: dict[tuple[str, str], tuple[tuple, list[DKIMKey]]] = {}
        self._told_no_key: set[str] = set()

    def _keys(self, domain: str) -> list[DKIMKey]:
        """The active selector's keys; [] when the domain has none; DKIMKeyError if unsafe."""
        try:
            selector = rotation.active_selector(self.keydir, domain)
        except (OSError, ValueError):
            return []
        if selector is None:
            return []
        ident = []
        for a in keys.ALGORITHMS:
            p = keys.key_path(self.keydir, domain, selector, a)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise DKIMKeyError(f"cannot stat DKIM key {p}: {e.strerror}") from None
            ident.append((str(p), st.st_ino, st.st_ctime_ns, st.st_mtime_ns))
        if not ident:
            return []
        key = (domain, selector)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == tuple(ident):
            return cached[1]
        loaded = keys.load(self.keydir, domain, selector)
        self._cache[key] = (tuple(ident), loaded)
        return loaded

    def sign(self, message: bytes, log: Any) -> bytes:
        """The message with DKIM-Signature fields on top, or as it was (logged why)."""
        domain = from_domain(message)
        if domain is None:
            log.debug("not DKIM-signed: no From address")
            return message
        for d in candidate_domains(domain):
            try:
                found = self._keys(d)
            except (DKIMKeyError, ValueError) as e:
                log.warning("DKIM key refused; sending unsigned", domain=d, error=str(e))
                return message
            if not found:
                continue
            try:
                fields = sign.sign(message, d, found)
            except Exception as e:  # dkimpy raises its own and ValueError; mail must go on
                log.warning("DKIM signing failed; sending unsigned", domain=d,
                            error=f"{type(e).__name__}: {e}")
                return message
            self._told_no_key.discard(domain)
            log.info("DKIM-signed", domain=d, selector=found[0].selector,
                     dns_selectors=[k.dns_selector for k in found],
                     algorithms=[k.algorithm for k in found])
            return fields + message
        if domain not in self._told_no_key:  # once per domain, not per message
            if len(self._told_no_key) >= 10000:  # bounded: From domains are anyone's choice
                self._told_no_key.clear()
            self._told_no_key.add(domain)
            log.debug("not DKIM-signed: no key for the From domain", domain=domain)
        return message
