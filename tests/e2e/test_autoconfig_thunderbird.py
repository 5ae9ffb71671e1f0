"""Thunderbird sets up an account from just an address and a password, by asking
our autoconfig process the way its account wizard does.

Its ISP lookup (FetchConfig.fromISP, the step the wizard runs first after its
local files) fetches https://autoconfig.<domain>/mail/config-v1.1.xml and
https://<domain>/.well-known/autoconfig/...: on port 443, so the stack serves
autoconfig on 127.0.0.1:443 (we run as root), and Gecko's
network.dns.localDomains makes the test domain's names resolve to loopback
with no /etc/hosts change and no DNS query leaving the machine. The
self-signed certificate is accepted for each name and port as a user accepts
it. The account is then made from what was found (CreateInBackend, as the
wizard's "Done") and logs in over IMAP with TLS.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl

import pytest

from tests.conftest import PASSWORD, Stack, require_tool
from tests.e2e.test_autoconfig import fixed_ports
from tests.e2e.test_deploy import skip_or_fail
from tests.e2e.thunderbird import Thunderbird

ALICE = "alice@example.test"
NAMES = ("autoconfig.example.test", "example.test", "mail.example.test")

SET_UP = """
const { FetchConfig } = ChromeUtils.importESModule(
  "resource:///modules/accountcreation/FetchConfig.sys.mjs");
const { AccountConfig } = ChromeUtils.importESModule(
  "resource:///modules/accountcreation/AccountConfig.sys.mjs");
const { CreateInBackend } = ChromeUtils.importESModule(
  "resource:///modules/accountcreation/CreateInBackend.sys.mjs");
const [address, password, certificate, trusted] = args;
const certdb = Cc["@mozilla.org/security/x509certdb;1"].getService(Ci.nsIX509CertDB);
const overrides = Cc["@mozilla.org/security/certoverride;1"]
  .getService(Ci.nsICertOverrideService);
for (const [host, port] of trusted) {
  overrides.rememberValidityOverride(host, port, {},
    certdb.constructX509FromBase64(certificate), false);
}
// Thunderbird 140 ESR takes callbacks; later releases return a promise and take a signal.
const domain = address.split("@")[1];
const config = FetchConfig.fromISP.length >= 4
  ? await new Promise((ok, fail) => FetchConfig.fromISP(domain, address, ok, fail))
  : await FetchConfig.fromISP(domain, address, new AbortController().signal);
const side = s => ({type: s.type, hostname: s.hostname, port: s.port, socketType: s.socketType,
                    username: s.username, auth: s.auth});
const found = {source: config.subSource, incoming: side(config.incoming),
               outgoing: side(config.outgoing)};
AccountConfig.replaceVariables(config, "Alice", address, password);  // in place
const account = await CreateInBackend.createAccountInBackend(config);
const server = account.incomingServer;
found.account = [server.type, server.port, server.username];
found.login = await new Promise(done => server.rootFolder.getChildNamed("INBOX")
  .QueryInterface(Ci.nsIMsgImapMailFolder)
  .updateFolderWithListener(win.msgWindow, {
    OnStartRunningUrl() {},
    OnStopRunningUrl(url, status) { done(status); },
  }));
found.smtp = MailServices.outgoingServer.getServerByIdentity(account.defaultIdentity)
  .QueryInterface(Ci.nsISmtpServer).port;
return found;
"""


def port_443_free() -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 443))
        except OSError:
            return False
    return True


@pytest.fixture
def web443(bare_stack: Stack) -> Stack:
    if not port_443_free():
        skip_or_fail("127.0.0.1:443 is in use: Thunderbird's ISP lookup asks port 443 only")
    sections = fixed_ports()
    mta = sections.pop("mta")
    sections["autoconfig"] = {"listen": ["127.0.0.1:443"]}
    bare_stack.write_config(sections=sections, **mta)
    bare_stack.start("mdad")
    bare_stack.start("mtad")
    return bare_stack


def test_a_new_account_finds_imaps_and_submission_by_itself(web443, tmp_path):
    require_tool("thunderbird")
    stack = web443
    tb = Thunderbird(tmp_path / "thunderbird", ALICE, {
        "network.dns.localDomains": ",".join(NAMES),
        "mailnews.auto_config.fetchFromISP.enabled": True,
        "mailnews.auto_config.fetchFromISP.sslOnly": True,
        "mailnews.auto_config_url": "",  # no Mozilla ISPDB: traffic stays on loopback
    })
    try:
        der = ssl.PEM_cert_to_DER_cert((stack.root / "etc" / "cert.pem").read_text())
        trusted = [[name, 443] for name in NAMES] + [
            ["mail.example.test", stack.port(x)] for x in ("imaps", "submission")]
        found = tb.run(SET_UP, ALICE, PASSWORD, base64.b64encode(der).decode(), trusted,
                       timeout=120)
    finally:
        tb.close()
    assert found["source"] == "xml-from-isp-https", found
    # socketType 3: SSL; auth 3: password-cleartext
    assert found["incoming"] == {"type": "imap", "hostname": "mail.example.test",
                                 "port": stack.port("imaps"), "socketType": 3,
                                 "username": "%EMAILADDRESS%", "auth": 3}, found
    assert found["outgoing"]["port"] == stack.port("submission"), found
    assert found["outgoing"]["socketType"] == 2, found  # STARTTLS
    assert found["account"] == ["imap", stack.port("imaps"), ALICE]
    assert found["smtp"] == stack.port("submission")
    assert found["login"] == 0, found  # NS_OK: logged in over IMAPS and read the INBOX
    assert "path=/mail/config-v1.1.xml" in stack.log("mtad")
    assert re.search(r"logged in .*user=alice@example.test", stack.log("mdad")), \
        stack.log("mdad")[-3000:]
