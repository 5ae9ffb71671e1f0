"""The autoconfig process of a running mtad, over HTTPS, as mail clients fetch its documents."""

from __future__ import annotations

import plistlib
import socket
import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from mta import dnsrecords
from mta.autoconfig import documents
from tests.conftest import Stack, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_ports() -> dict[str, dict[str, list[str]]]:
    """Listeners on real port numbers: the documents advertise the configured ports,
    and port 0 (the tests' default) is no port a client can be told."""
    def one() -> list[str]:
        return [f"127.0.0.1:{free_port()}"]
    return {"imap": {"imap": one(), "imaps": one()}, "pop3": {"pop3": one(), "pop3s": one()},
            "mta": {"submission": one(), "submissions": one()}}


def start_with_fixed_ports(stack: Stack) -> Stack:
    sections = fixed_ports()
    mta = sections.pop("mta")
    stack.write_config(sections=sections, **mta)
    stack.start("mdad")
    stack.start("mtad")
    return stack


@pytest.fixture
def web(bare_stack: Stack) -> Stack:
    return start_with_fixed_ports(bare_stack)


def trusting(stack: Stack) -> ssl.SSLContext:
    """A client that trusts exactly the stack's self-signed certificate (made for 127.0.0.1)."""
    ctx = ssl.create_default_context(cafile=str(stack.root / "etc" / "cert.pem"))
    return ctx


def fetch(stack: Stack, path: str, host: str = "127.0.0.1", data: bytes | None = None,
          expect: int = 200) -> tuple[str, bytes]:
    _, port = stack.address("autoconfig")
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=data,
                                 headers={"Host": host})
    try:
        with urllib.request.urlopen(req, context=trusting(stack), timeout=60) as r:
            assert r.status == expect
            return r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        assert e.code == expect, e.code
        return e.headers["Content-Type"], e.read()


def ports(stack: Stack) -> dict[tuple[str, str], str]:
    from common.config import load
    cfg = load(stack.config)
    return {(s.protocol, s.tls): str(s.port) for s in documents.servers(cfg)}


def test_thunderbird_document_over_https(web):
    stack = web
    want = ports(stack)
    for path in ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"):
        ctype, body = fetch(stack, f"{path}?emailaddress=alice%40example.test",
                            host="autoconfig.example.test")
        assert ctype.startswith("application/xml")
        root = ET.fromstring(body)
        assert root.get("version") == "1.1"
        imap = root.find("emailProvider/incomingServer[@type='imap']")
        assert imap.findtext("hostname") == "mail.example.test"
        assert imap.findtext("socketType") == "SSL"
        assert imap.findtext("port") == want["imap", "SSL"] == str(stack.port("imaps"))
        assert imap.findtext("username") == "%EMAILADDRESS%"
        smtp = root.find("emailProvider/outgoingServer[@type='smtp']")
        assert smtp.findtext("socketType") == "STARTTLS"
        assert smtp.findtext("port") == str(stack.port("submission"))
    # Another domain is not ours to describe.
    fetch(stack, "/mail/config-v1.1.xml?emailaddress=a%40example.net", expect=404)


def test_autodiscover_post_mobileconfig_and_mta_sts(web):
    stack = web
    body = (b'<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
            b'autodiscover/outlook/requestschema/2006"><Request>'
            b"<EMailAddress>bob@example.test</EMailAddress><AcceptableResponseSchema>"
            b"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
            b"</AcceptableResponseSchema></Request></Autodiscover>")
    ctype, doc = fetch(stack, "/autodiscover/autodiscover.xml", host="autodiscover.example.test",
                       data=body)
    root = ET.fromstring(doc)
    ns = {"o": documents.OUTLOOK_RESPONSE}
    types = [p.findtext("o:Type", namespaces=ns)
             for p in root.findall(".//o:Protocol", ns)]
    assert {"IMAP", "POP3", "SMTP"} <= set(types)
    assert {el.text for el in root.iter(f"{{{documents.OUTLOOK_RESPONSE}}}LoginName")} == \
        {"bob@example.test"}

    ctype, doc = fetch(stack, "/apple/bob@example.test.mobileconfig", host="example.test")
    assert ctype == "application/x-apple-aspen-config"
    mail = plistlib.loads(doc)["PayloadContent"][0]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAddress"] == "bob@example.test"

    from common.config import load
    ctype, doc = fetch(stack, "/.well-known/mta-sts.txt", host="mta-sts.example.test")
    assert ctype.startswith("text/plain")
    assert doc.decode() == dnsrecords.mta_sts_policy(load(stack.config))


def test_a_hostile_request_gets_an_error_and_the_process_serves_on(stack):
    _, port = stack.address("autoconfig")
    ctx = trusting(stack)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 501 ")
    pid = stack.state("mtad")["children"]["autoconfig"]
    fetch(stack, "/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    assert stack.state("mtad")["children"]["autoconfig"] == pid


def test_an_empty_listen_list_starts_no_autoconfig_process(bare_stack, monkeypatch):
    import tests.conftest
    bare_stack.write_config(sections={"autoconfig": {"listen": []}})
    monkeypatch.setattr(tests.conftest, "MTAD_ROLES",
                        tuple(r for r in tests.conftest.MTAD_ROLES if r != "autoconfig"))
    bare_stack.start("mdad")
    bare_stack.start("mtad")
    state = bare_stack.state("mtad")
    assert "autoconfig" not in state["children"]
    assert "autoconfig" not in state["listeners"]


def test_a_reload_replaces_the_process_and_applies_the_new_configuration(web):
    from tests.e2e.test_reload_stop import hup_and_wait
    stack = web
    old = stack.state("mtad")["children"]["autoconfig"]
    text = stack.config.read_text().replace('hostname = "mail.example.test"',
                                            'hostname = "mx.example.test"')
    stack.config.write_text(text)
    new = hup_and_wait(stack, "mtad")
    assert new["autoconfig"] != old

    def advertised() -> str | None:
        try:
            _, body = fetch(stack, "/mail/config-v1.1.xml?emailaddress=alice%40example.test")
        except (urllib.error.URLError, ConnectionError, ssl.SSLError):
            # A connection the retiring process accepted but had not finished the TLS
            # handshake of is cut when it exits (the handler, which it waits for, starts
            # only after the handshake); clients retry.
            return None
        return ET.fromstring(body).find("emailProvider/incomingServer/hostname").text
    # The old process may take a last connection while it retires.
    wait_for(lambda: advertised() == "mx.example.test", 60, "the new host name served")
