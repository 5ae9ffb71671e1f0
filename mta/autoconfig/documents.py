"""The set-up documents mail clients fetch, built from the configuration. Pure.

Each says how to reach the servers that are actually configured (a listener
list left empty is not offered), at the host name clients connect to
(`hostname`), with the whole address as the login:

- Thunderbird's autoconfig, clientConfig version 1.1
  (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat);
- Microsoft's autodiscover "POX" response, the 2006 outlook responseschema
  ([MS-OXDSCLI]);
- an Apple configuration profile with one com.apple.mail.managed payload,
  unsigned (iOS and macOS show it as unverified and still install it).

Every text that comes from a request (the address) goes through xml.etree or
plistlib, which escape it: an address with & or < in it stays text.
"""

from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from common.config import Config, parse_listen

AUTODISCOVER_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
# A fixed namespace for the profile's UUIDs: the same address gets the same
# identifiers, so installing a profile again replaces the old one.
PROFILE_NAMESPACE = uuid.UUID("4f0a3f5e-6c1b-4b7e-9d2a-6d61696c7061")


@dataclass(frozen=True)
class Server:
    protocol: str  # imap, pop3, smtp
    port: int
    tls: str  # "SSL" (implicit TLS) or "STARTTLS", as Thunderbird spells them


def _first_port(listeners: list[str]) -> int | None:
    return parse_listen(listeners[0])[1] if listeners else None


def servers(cfg: Config) -> list[Server]:
    """The configured client listeners, implicit TLS first (RFC 8314 prefers it),
    except for SMTP, where 587 with STARTTLS is what clients expect first."""
    table = [("imap", cfg.imap.imaps, "SSL"), ("imap", cfg.imap.imap, "STARTTLS"),
             ("pop3", cfg.pop3.pop3s, "SSL"), ("pop3", cfg.pop3.pop3, "STARTTLS"),
             ("smtp", cfg.mta.submission, "STARTTLS"), ("smtp", cfg.mta.submissions, "SSL")]
    out = []
    for protocol, listeners, tls in table:
        port = _first_port(listeners)
        if port:
            out.append(Server(protocol, port, tls))
    return out


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = text
    return el


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def thunderbird(cfg: Config, domain: str) -> bytes:
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    _text(provider, "domain", domain)
    _text(provider, "displayName", f"{domain} mail")
    _text(provider, "displayShortName", domain)
    for s in servers(cfg):
        tag = "outgoingServer" if s.protocol == "smtp" else "incomingServer"
        el = ET.SubElement(provider, tag, type=s.protocol)
        _text(el, "hostname", cfg.hostname)
        _text(el, "port", str(s.port))
        _text(el, "socketType", s.tls)
        _text(el, "authentication", "password-cleartext")
        _text(el, "username", "%EMAILADDRESS%")
    return _xml(root)


def autodiscover(cfg: Config, address: str) -> bytes:
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_RESPONSE)
    account = ET.SubElement(response, "Account")
    _text(account, "AccountType", "email")
    _text(account, "Action", "settings")
    for s in servers(cfg):
        proto = ET.SubElement(account, "Protocol")
        _text(proto, "Type", s.protocol.upper())
        _text(proto, "Server", cfg.hostname)
        _text(proto, "Port", str(s.port))
        _text(proto, "LoginName", address)
        _text(proto, "DomainRequired", "off")
        _text(proto, "SPA", "off")
        # SSL on: TLS from the first byte; Encryption TLS: STARTTLS (Outlook 2010 and later).
        _text(proto, "SSL", "on")
        _text(proto, "Encryption", "SSL" if s.tls == "SSL" else "TLS")
        _text(proto, "AuthRequired", "on")
    return _xml(root)


def autodiscover_address(body: bytes) -> str | None:
    """The EMailAddress of an autodiscover POX request, or None.

    The body is a client's: expat expands no external entities, and the
    server caps its size, so a hostile document costs little."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rpartition("}")[2] == "EMailAddress" and el.text:
            return el.text.strip()
    return None


def mobileconfig(cfg: Config, address: str) -> bytes:
    """An Apple profile for one account; IMAP if offered, else POP3, and SMTP."""
    chosen = {}
    for s in servers(cfg):  # implicit TLS is listed first and wins
        key = "smtp" if s.protocol == "smtp" else "incoming"
        chosen.setdefault(key, s)
    payload: dict[str, object] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{cfg.hostname}.mail.{address}",
        "PayloadUUID": str(uuid.uuid5(PROFILE_NAMESPACE, "mail:" + address)).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": address,
        "EmailAddress": address,
    }
    incoming = chosen.get("incoming")
    if incoming:
        payload.update({
            "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap"
            else "EmailTypePOP",
            "IncomingMailServerHostName": cfg.hostname,
            "IncomingMailServerPortNumber": incoming.port,
            "IncomingMailServerUseSSL": True,
            "IncomingMailServerUsername": address,
            "IncomingMailServerAuthentication": "EmailAuthPassword",
        })
    smtp = chosen.get("smtp")
    if smtp:
        payload.update({
            "OutgoingMailServerHostName": cfg.hostname,
            "OutgoingMailServerPortNumber": smtp.port,
            "OutgoingMailServerUseSSL": True,
            "OutgoingMailServerUsername": address,
            "OutgoingMailServerAuthentication": "EmailAuthPassword",
            "OutgoingPasswordSameAsIncomingPassword": True,
        })
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{cfg.hostname}.mail.{address}.profile",
        "PayloadUUID": str(uuid.uuid5(PROFILE_NAMESPACE, "profile:" + address)).upper(),
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
