"""Which document answers which request. Pure: a Request in, (status, type, body) out.

Any Host is answered (the names autoconfig.<domain>, autodiscover.<domain>
and mta-sts.<domain> of every local domain point here, and a test or `make
run` reaches it as 127.0.0.1). The domain comes from the address the client
sends (query `emailaddress=`, the autodiscover POST body, or the Apple path),
else from the Host name; a domain that is not ours gets 404, so the endpoint
tells nothing about other domains and serves no one else's set-up.
"""

from __future__ import annotations

import re

from common.config import Config
from mta import dnsrecords
from mta.autoconfig import documents
from mta.autoconfig.request import Request

XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
APPLE = "application/x-apple-aspen-config"

THUNDERBIRD_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"  # clients vary its case
MTA_STS_PATH = "/.well-known/mta-sts.txt"
APPLE_PATH = re.compile(r"/apple/(?P<address>[^/]+)\.mobileconfig")
APPLE_QUERY_PATH = "/apple/mail.mobileconfig"
HOST_LABELS = ("autoconfig.", "autodiscover.", "mta-sts.")

Response = tuple[int, str, bytes]


def valid_address(address: str | None) -> bool:
    # What goes into the documents: one @, a domain, no control characters
    # (XML 1.0 cannot carry most of them); anything else is escaped on output.
    if not address or len(address) > 254 or any(ord(c) < 0x20 or c == "\x7f" for c in address):
        return False
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain)


def _host_domain(cfg: Config, req: Request) -> str | None:
    host = req.headers.get("host", "").lower()
    host = re.sub(r":[0-9]+$", "", host).rstrip(".")
    for label in HOST_LABELS:
        if host.startswith(label) and cfg.is_local_domain(host[len(label):]):
            return host[len(label):]
    return host if cfg.is_local_domain(host) else None


def _not_found(what: str) -> Response:
    return 404, TEXT, f"{what}\n".encode()


def answer(cfg: Config, req: Request) -> Response:
    if req.method not in ("GET", "HEAD", "POST"):
        return 405, TEXT, b"method not allowed\n"
    path = req.path
    if path == MTA_STS_PATH:
        return 200, TEXT, dnsrecords.mta_sts_policy(cfg).encode()
    if path in THUNDERBIRD_PATHS:
        address = req.arg("emailaddress")
        if address is not None:
            if not valid_address(address) or not cfg.is_local_domain(
                    documents.domain_of(address)):
                return _not_found("not a local address")
            domain = documents.domain_of(address)
        else:
            domain = _host_domain(cfg, req)
            if domain is None:
                return _not_found("no local domain asked for")
        return 200, XML, documents.thunderbird(cfg, domain)
    if path.lower() == AUTODISCOVER_PATH:
        if req.method == "POST":
            address = documents.autodiscover_address(req.body)
        else:
            address = req.arg("emailaddress")
        if not valid_address(address) or not cfg.is_local_domain(documents.domain_of(address)):
            return _not_found("not a local address")
        return 200, XML, documents.autodiscover(cfg, address)
    m = APPLE_PATH.fullmatch(path)
    address = m.group("address") if m and path != APPLE_QUERY_PATH else req.arg("emailaddress")
    if m or path == APPLE_QUERY_PATH:
        if not valid_address(address) or not cfg.is_local_domain(documents.domain_of(address)):
            return _not_found("not a local address")
        return 200, APPLE, documents.mobileconfig(cfg, address)
    return _not_found("not found")
