"""The autoconfig documents, read back with a parser: Thunderbird's, autodiscover's, Apple's."""

from __future__ import annotations

import dataclasses
import plistlib
import xml.etree.ElementTree as ET

import pytest

from common.config import from_dict
from mta import dnsrecords
from mta.autoconfig import documents, routes
from mta.autoconfig.request import BadRequest, parse_head

CFG = from_dict({"hostname": "mail.example.org", "domains": ["example.org", "example.net"]})
NS = {"a": documents.AUTODISCOVER_RESPONSE, "o": documents.OUTLOOK_RESPONSE}


def get(path: str, host: str = "127.0.0.1", method: str = "GET", body: bytes = b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}"
    if method == "POST":
        head += f"\r\nContent-Length: {len(body)}"
    req = parse_head(head.encode())
    req.body = body
    return routes.answer(CFG, req)


def servers(doc: bytes) -> list[tuple[str, str, str, str, str]]:
    root = ET.fromstring(doc)
    return [(el.tag, el.get("type"), el.findtext("port"), el.findtext("socketType"),
             el.findtext("username"))
            for el in root.find("emailProvider") if el.tag.endswith("Server")]


@pytest.mark.parametrize("path", routes.THUNDERBIRD_PATHS)
def test_thunderbird_lists_every_default_listener(path):
    status, ctype, body = get(f"{path}?emailaddress=alice%40example.org")
    assert status == 200 and ctype.startswith("application/xml")
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    assert root.find("emailProvider/domain").text == "example.org"
    assert servers(body) == [
        ("incomingServer", "imap", "993", "SSL", "%EMAILADDRESS%"),
        ("incomingServer", "imap", "143", "STARTTLS", "%EMAILADDRESS%"),
        ("incomingServer", "pop3", "995", "SSL", "%EMAILADDRESS%"),
        ("incomingServer", "pop3", "110", "STARTTLS", "%EMAILADDRESS%"),
        ("outgoingServer", "smtp", "587", "STARTTLS", "%EMAILADDRESS%"),
        ("outgoingServer", "smtp", "465", "SSL", "%EMAILADDRESS%"),
    ]
    for el in root.iter("hostname"):
        assert el.text == "mail.example.org"
    assert {el.text for el in root.iter("authentication")} == {"password-cleartext"}


def test_only_configured_listeners_are_offered():
    cfg = dataclasses.replace(
        CFG, pop3=dataclasses.replace(CFG.pop3, pop3=[], pop3s=[]),
        mta=dataclasses.replace(CFG.mta, submissions=[]),
        imap=dataclasses.replace(CFG.imap, imap=["127.0.0.1:1143"]))
    assert [(t, p, s) for _, t, p, s, _ in servers(documents.thunderbird(cfg, "example.org"))] \
        == [("imap", "993", "SSL"), ("imap", "1143", "STARTTLS"), ("smtp", "587", "STARTTLS")]


def test_domain_from_the_host_name_without_an_address():
    assert get(routes.THUNDERBIRD_PATHS[0], host="autoconfig.example.net:443")[0] == 200
    assert get(routes.THUNDERBIRD_PATHS[0], host="example.net")[0] == 200
    assert get(routes.THUNDERBIRD_PATHS[0], host="autoconfig.other.test")[0] == 404


def test_another_domain_is_not_answered():
    for path in ("/mail/config-v1.1.xml?emailaddress=a@other.test",
                 "/autodiscover/autodiscover.xml?emailaddress=a@other.test",
                 "/apple/a@other.test.mobileconfig"):
        assert get(path)[0] == 404, path


def autodiscover_request(address: str) -> bytes:
    el = ET.Element("Autodiscover", xmlns="http://schemas.microsoft.com/exchange/autodiscover/"
                    "outlook/requestschema/2006")
    req = ET.SubElement(el, "Request")
    ET.SubElement(req, "EMailAddress").text = address
    ET.SubElement(req, "AcceptableResponseSchema").text = documents.OUTLOOK_RESPONSE
    return ET.tostring(el)


def test_autodiscover_post_names_every_protocol():
    status, _, body = get("/Autodiscover/Autodiscover.xml", method="POST",
                          body=autodiscover_request("bob@example.org"))
    assert status == 200
    root = ET.fromstring(body)
    protos = root.findall("o:Response/o:Account/o:Protocol", NS)
    got = [(p.findtext("o:Type", namespaces=NS), p.findtext("o:Port", namespaces=NS),
            p.findtext("o:Encryption", namespaces=NS), p.findtext("o:LoginName", namespaces=NS))
           for p in protos]
    assert ("IMAP", "993", "SSL", "bob@example.org") in got
    assert ("POP3", "995", "SSL", "bob@example.org") in got
    assert ("SMTP", "587", "TLS", "bob@example.org") in got
    assert all(p.findtext("o:Server", namespaces=NS) == "mail.example.org" for p in protos)


def test_autodiscover_get_and_bad_bodies():
    assert get("/autodiscover/autodiscover.xml?emailaddress=bob@example.org")[0] == 200
    assert get("/autodiscover/autodiscover.xml", method="POST", body=b"<not xml")[0] == 404
    assert get("/autodiscover/autodiscover.xml", method="POST", body=b"<a/>")[0] == 404


def test_mobileconfig_is_a_mail_profile():
    for path in ("/apple/carol@example.org.mobileconfig",
                 "/apple/mail.mobileconfig?emailaddress=carol%40example.org"):
        status, ctype, body = get(path)
        assert status == 200 and ctype == "application/x-apple-aspen-config"
        profile = plistlib.loads(body)
        assert profile["PayloadType"] == "Configuration"
        (mail,) = profile["PayloadContent"]
        assert mail["PayloadType"] == "com.apple.mail.managed"
        assert mail["EmailAddress"] == "carol@example.org"
        assert mail["EmailAccountType"] == "EmailTypeIMAP"
        assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == \
            ("mail.example.org", 993)
        assert mail["OutgoingMailServerPortNumber"] == 587  # STARTTLS when UseSSL is on
        assert mail["IncomingMailServerUsername"] == "carol@example.org"
    # The same address gets the same identifiers: installing it again replaces it.
    assert get(path)[2] == body


def test_mta_sts_policy_is_the_published_one():
    status, ctype, body = get("/.well-known/mta-sts.txt", host="mta-sts.example.org")
    assert status == 200 and ctype.startswith("text/plain")
    assert body.decode() == dnsrecords.mta_sts_policy(CFG)
    assert "mx: mail.example.org" in body.decode()


HOSTILE = '"</username><x>&amp;<!--"@example.org'


def test_an_address_cannot_inject_markup():
    from urllib.parse import quote
    status, _, body = get("/autodiscover/autodiscover.xml?emailaddress=" + quote(HOSTILE))
    assert status == 200
    root = ET.fromstring(body)
    assert not root.findall(".//x")
    logins = {el.text for el in root.iter(f"{{{documents.OUTLOOK_RESPONSE}}}LoginName")}
    assert logins == {HOSTILE}
    status, _, body = get("/apple/mail.mobileconfig?emailaddress=" + quote(HOSTILE))
    assert plistlib.loads(body)["PayloadContent"][0]["EmailAddress"] == HOSTILE
    status, _, body = get("/autodiscover/autodiscover.xml", method="POST",
                          body=autodiscover_request(HOSTILE))
    assert status == 200 and not ET.fromstring(body).findall(".//x")


def test_control_characters_are_refused():
    assert get("/autodiscover/autodiscover.xml?emailaddress=a%01b@example.org")[0] == 404


@pytest.mark.parametrize("head, status", [
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked", 501),
    (b"POST / HTTP/1.1\r\nHost: x", 411),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999", 413),
    (b"GET / HTTP/1.1\r\nBad Header: x", 400),
    (b"GET /\r\n", 400),
])
def test_requests_refused(head, status):
    with pytest.raises(BadRequest) as e:
        parse_head(head)
    assert e.value.status == status


def test_unknown_path_and_method():
    assert get("/")[0] == 404
    req = parse_head(b"DELETE /mail/config-v1.1.xml HTTP/1.1")
    assert routes.answer(CFG, req)[0] == 405
