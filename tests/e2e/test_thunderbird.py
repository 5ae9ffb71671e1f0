"""Thunderbird itself, headless, on the real daemons over TLS.

Thunderbird (Debian package thunderbird) gets new accounts as its account
wizard would leave them, with the server's certificate accepted as a user
accepts it, and then does what a user does.

Over IMAP (143 with STARTTLS, and 993) it reads the folder list and the
message list, reads a message, marks, flags, deletes (a move to Trash),
saves a draft, makes and renames a folder and empties the Trash. Meanwhile
another client changes the mailbox and mail arrives over LMTP while it sits
in IDLE, and after logging in again it catches up (with CONDSTORE on, by
UID FETCH CHANGEDSINCE).

Over SMTP submission and POP3 it sends a message (a copy goes to Sent over
IMAP), and another account fetches it and deletes it from the server.

Each step is checked on both sides, in what Thunderbird shows and in what
the server holds, and no command of Thunderbird's gets an error.
"""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import ssl
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, Stack, client_tls, require_tool, wait_for
from tests.e2e.thunderbird import Thunderbird

ALICE = "alice@example.test"


def message(n: int, subject: str) -> bytes:
    return (f"From: Bob <bob@example.net>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 4 Feb 2020 09:0{n}:00 +0000\r\nMessage-ID: <n{n}@example.net>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nText {n}.\r\n").encode()


class Observer:
    """Another client's view of alice's mailbox (imaplib over IMAPS)."""

    def __init__(self, stack: Stack) -> None:
        self.c = imaplib.IMAP4_SSL(*stack.address("imaps"), ssl_context=client_tls(), timeout=30)
        self.c.login(ALICE, PASSWORD)

    def flags(self, folder: str) -> dict[str, set[str]]:
        """Subject -> flags of every message in a folder."""
        self.c.select(folder, readonly=True)
        typ, data = self.c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = {}
        for item in data:
            if isinstance(item, tuple):
                flags = imaplib.ParseFlags(item[0])
                subject = item[1].decode().split(":", 1)[1].strip()
                out[subject] = {f.decode() for f in flags} - {"\\Recent"}
        return out

    def folders(self) -> set[str]:
        typ, data = self.c.list()
        return {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in data}


def certificate_base64(stack: Stack) -> str:
    der = ssl.PEM_cert_to_DER_cert((stack.root / "etc" / "cert.pem").read_text())
    return base64.b64encode(der).decode()


# An account as the account wizard leaves it, over STARTTLS (STLS) or implicit
# TLS, with the self-signed certificate accepted as "Confirm Security
# Exception" accepts it.
NEW_ACCOUNT = """
const trust = (port, certificate) => {
  const certdb = Cc["@mozilla.org/security/x509certdb;1"].getService(Ci.nsIX509CertDB);
  Cc["@mozilla.org/security/certoverride;1"].getService(Ci.nsICertOverrideService)
    .rememberValidityOverride("127.0.0.1", port, {}, certdb.constructX509FromBase64(certificate),
                              false);
};
const newAccount = (type, address, port, password, certificate, implicitTLS = false) => {
  trust(port, certificate);
  const server = MailServices.accounts.createIncomingServer(address, "127.0.0.1", type);
  server.port = port;
  server.socketType = implicitTLS ? Ci.nsMsgSocketType.SSL : Ci.nsMsgSocketType.alwaysSTARTTLS;
  server.authMethod = Ci.nsMsgAuthMethod.passwordCleartext;
  server.password = password;
  const identity = MailServices.accounts.createIdentity();
  identity.email = address;
  const account = MailServices.accounts.createAccount();
  account.addIdentity(identity);
  account.defaultIdentity = identity;
  account.incomingServer = server;
  return server;
};
"""

ADD_ACCOUNT = NEW_ACCOUNT + """
newAccount("imap", ACCOUNT, ...args);
return await update("INBOX");
"""

READ_BODY = """
const { MsgHdrToMimeMessage } = ChromeUtils.importESModule(
  "resource:///modules/gloda/MimeMessage.sys.mjs");
const hdr = [...folder("INBOX").messages].find(h => h.mime2DecodedSubject == args[0]);
return await new Promise(done => MsgHdrToMimeMessage(
  hdr, null, (h, mime) => done(mime ? mime.coerceBodyToPlaintext() : null), true, {}));
"""

MARK_FLAG_DELETE = """
const inbox = folder("INBOX");
const bySubject = s => [...inbox.messages].find(h => h.mime2DecodedSubject == s);
inbox.markMessagesRead([bySubject(args[0])], true);
inbox.markMessagesFlagged([bySubject(args[1])], true);
// The Delete key: with the default "move it to the Trash folder" model.
inbox.deleteMessages([bySubject(args[2])], win.msgWindow, false, false, null, true);
"""

SAVE_DRAFT = """
const path = PathUtils.join(PathUtils.tempDir, "draft.eml");
await IOUtils.writeUTF8(path, args[0]);
const file = await IOUtils.getFile(path);
MailServices.copy.copyFileMessage(file, folder("Drafts"), null, true,
  Ci.nsMsgMessageFlags.Read, "", null, win.msgWindow);
"""


@pytest.fixture(params=[(False, "imap"), (True, "imaps")], ids=["starttls", "imaps-condstore"])
def thunderbird(request, tmp_path: Path):
    """Thunderbird leaves CONDSTORE off unless asked (mail.server.default.use_condstore);
    with it on, it resyncs a folder's flags with UID FETCH (CHANGEDSINCE). The IMAP
    account uses 143 with STARTTLS, or 993."""
    require_tool("thunderbird")
    condstore, tb_listener = request.param
    tb = Thunderbird(tmp_path / "thunderbird", ALICE,
                     {"mail.server.default.use_condstore": condstore})
    tb.condstore, tb.listener = condstore, tb_listener
    try:
        yield tb
    finally:
        tb.close()


def start_as_in_production(stack: Stack, *daemons: str) -> None:
    """No login on 143 or 110 before STARTTLS/STLS, even from loopback."""
    config = stack.config.read_text()
    stack.config.write_text(config.replace("plaintext_on_loopback = true",
                                           "plaintext_on_loopback = false"))
    for daemon in daemons:
        stack.start(daemon)


def test_thunderbird_works_a_mailbox_over_starttls(bare_stack: Stack, thunderbird) -> None:
    stack = bare_stack
    start_as_in_production(stack, "mdad")
    other = Observer(stack)
    subjects = ["note 1", "note 2", "=?utf-8?q?caf=C3=A9?= menu"]
    for n, subject in enumerate(subjects, 1):
        assert other.c.append("INBOX", None, None, message(n, subject))[0] == "OK"
    tb = thunderbird

    assert tb.run(ADD_ACCOUNT, stack.port(tb.listener), PASSWORD, certificate_base64(stack),
                  tb.listener == "imaps") == 0
    shown = wait_for(lambda: (rows := tb.listing("INBOX")) and len(rows) == 3 and rows,
                     60, "Thunderbird's message list")
    assert [(r["subject"], r["author"]) for r in shown] == [
        ("note 1", "Bob <bob@example.net>"), ("note 2", "Bob <bob@example.net>"),
        ("café menu", "Bob <bob@example.net>")]
    assert not any(r["read"] or r["flagged"] for r in shown)
    # The special-use folders are what Thunderbird files into.
    flags = tb.run("""return Object.fromEntries(accountServer().rootFolder.subFolders
                      .map(f => [f.name, f.flags]));""")
    for name, bit in (("Trash", 0x100), ("Sent", 0x200), ("Drafts", 0x400), ("Junk", 0x40000000),
                      ("Archive", 0x4000)):
        assert flags[name] & bit, name
    assert tb.run(READ_BODY, "note 2").strip() == "Text 2."

    tb.run(MARK_FLAG_DELETE, "note 1", "note 2", "café menu")
    wait_for(lambda: other.flags("INBOX") == {"note 1": {"\\Seen"}, "note 2": {"\\Flagged"}},
             60, "Thunderbird's read, flag and delete on the server")
    assert other.flags("Trash") == {"=?utf-8?q?caf=C3=A9?= menu": set()}

    # Another client answers one, then mail arrives, each while Thunderbird
    # sits in IDLE (it enters IDLE a moment after its last command).
    wait_for(tb.idling, 60, "Thunderbird in IDLE")
    other.c.select("INBOX")
    other.c.store("2", "+FLAGS", "(\\Answered)")
    wait_for(lambda: {r["subject"]: r for r in tb.listing("INBOX")}["note 2"]["replied"],
             60, "the answer flag in Thunderbird")
    wait_for(tb.idling, 60, "Thunderbird in IDLE again")
    with smtplib.LMTP(str(stack.lmtp_socket), timeout=30) as lmtp:
        lmtp.sendmail("bob@example.net", [ALICE], message(4, "arrived later"))
    rows = wait_for(lambda: (rows := {r["subject"]: r for r in tb.listing("INBOX")})
                    and "arrived later" in rows and rows, 60, "the delivery in Thunderbird")
    assert rows["note 1"]["read"] and rows["note 2"]["flagged"] and rows["note 2"]["replied"]
    assert not rows["arrived later"]["read"]
    assert tb.got_in_idle(r"^\* 2 FETCH \(.*\\Answered"), "the flag was not pushed in IDLE"
    assert tb.got_in_idle(r"^\* 3 EXISTS$"), "the delivery was not pushed in IDLE"

    # Away and back: Thunderbird logs out, another client changes the folder,
    # and Thunderbird selects it again and catches up.
    tb.run("accountServer().closeCachedConnections();")
    other.c.select("INBOX")
    other.c.store("1", "+FLAGS", "(\\Flagged)")
    other.c.store("2", "-FLAGS", "(\\Flagged)")
    # (Only flags: a count that changed makes Thunderbird fetch all flags anyway.)
    assert tb.run('return await update("INBOX");') == 0

    def caught_up() -> bool:
        rows = {r["subject"]: r for r in tb.listing("INBOX")}
        return rows["note 1"]["flagged"] and not rows["note 2"]["flagged"]
    wait_for(caught_up, 60, "Thunderbird to catch up after logging in again")
    resyncs = [c for c in tb.commands() if "CHANGEDSINCE" in c.upper()]
    assert bool(resyncs) == tb.condstore, resyncs

    draft = (f"From: {ALICE}\r\nTo: dan@example.net\r\nSubject: draft one\r\n"
             "Message-ID: <d1@example.test>\r\n\r\nUnfinished.\r\n")
    tb.run(SAVE_DRAFT, draft)
    wait_for(lambda: other.flags("Drafts") == {"draft one": {"\\Draft", "\\Seen"}},
             60, "the draft on the server")

    tb.run('accountServer().rootFolder.createSubfolder("Projects", win.msgWindow);')
    wait_for(lambda: "Projects" in other.folders() and tb.run('return !!folder("Projects");'),
             60, "Thunderbird's new folder")
    tb.run('folder("Projects").rename("Work", win.msgWindow);')
    wait_for(lambda: "Work" in other.folders() and "Projects" not in other.folders(),
             60, "Thunderbird's rename")

    tb.run('folder("Trash").emptyTrash(null);')
    wait_for(lambda: other.flags("Trash") == {}, 60, "an empty Trash")
    assert set(other.flags("INBOX")) == {"note 1", "note 2", "arrived later"}

    commands = [c.split(" ", 1)[0].upper() for c in tb.commands()]
    # Every connection (Thunderbird opens several) logs in only after STARTTLS.
    logins = commands.count("AUTHENTICATE") + commands.count("LOGIN")
    starttls = logins if tb.listener == "imap" else 0
    assert logins >= 2 and commands.count("STARTTLS") == starttls, commands
    for used in ("IDLE", "UID", "SELECT", "APPEND", "CREATE", "RENAME", "SUBSCRIBE", "EXPUNGE"):
        assert used in commands, used
    refused = [a for a in tb.answers() if not re.match(r"[0-9]+ OK\b", a)]
    assert refused == [], refused


ADD_SMTP = NEW_ACCOUNT + """
const [port, password, certificate] = args;
trust(port, certificate);
const out = MailServices.outgoingServer.createServer("smtp");
out.QueryInterface(Ci.nsISmtpServer).hostname = "127.0.0.1";
out.QueryInterface(Ci.nsISmtpServer).port = port;
out.socketType = Ci.nsMsgSocketType.alwaysSTARTTLS;
out.authMethod = Ci.nsMsgAuthMethod.passwordCleartext;
out.username = ACCOUNT;
out.password = password;
const identity = MailServices.accounts.findAccountForServer(accountServer()).defaultIdentity;
identity.smtpServerKey = out.key;
identity.doFcc = true;  // a copy in Sent, appended over IMAP
identity.fccFolderURI = folder("Sent").URI;
"""

# What the Send button ends in: the composed message handed to the send service.
SEND = """
const account = MailServices.accounts.findAccountForServer(accountServer());
const path = PathUtils.join(PathUtils.tempDir, "outgoing.eml");
await IOUtils.writeUTF8(path, args[0]);
const file = await IOUtils.getFile(path);
const fields = Cc["@mozilla.org/messengercompose/composefields;1"]
  .createInstance(Ci.nsIMsgCompFields);
fields.from = args[1];
fields.to = args[2];
const send = Cc["@mozilla.org/messengercompose/send;1"].createInstance(Ci.nsIMsgSend);
return await new Promise(done => send.sendMessageFile(
  account.defaultIdentity, account.key, fields, file, true, false,
  Ci.nsIMsgSend.nsMsgDeliverNow, null, {
    QueryInterface: ChromeUtils.generateQI(["nsIMsgSendListener"]),
    onStartSending() {}, onProgress() {}, onStatus() {}, onGetDraftFolderURI() {},
    onSendNotPerformed(id, status) { done(["not sent", status]); },
    onTransportSecurityError(id, status) { done(["TLS error", status]); },
    onStopSending(id, status) { done(["sent", status]); },
  }, null, null));
"""

POP3_FETCH = NEW_ACCOUNT + """
const server = newAccount("pop3", ...args);
const inbox = server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
// Get Messages, with the default "leave messages on server" off.
const status = await new Promise(done => MailServices.pop3.GetNewMail(win.msgWindow, {
  OnStartRunningUrl() {}, OnStopRunningUrl(url, status) { done(status); },
}, inbox, server));
return [status, [...inbox.messages].map(h => [h.mime2DecodedSubject, h.mime2DecodedAuthor])];
"""


@pytest.mark.parametrize("thunderbird", [(False, "imap")], ids=["starttls"], indirect=True)
def test_thunderbird_sends_over_submission_and_fetches_over_pop3(bare_stack: Stack,
                                                                 thunderbird) -> None:
    stack = bare_stack
    start_as_in_production(stack, "mdad", "mtad")
    tb = thunderbird
    cert = certificate_base64(stack)
    assert tb.run(ADD_ACCOUNT, stack.port("imap"), PASSWORD, cert) == 0
    wait_for(lambda: tb.run('return !!folder("Sent");'), 60, "Thunderbird's folder list")
    tb.run(ADD_SMTP, stack.port("submission"), PASSWORD, cert)

    outgoing = (f"From: Alice <{ALICE}>\r\nTo: bob@example.test\r\n"
                "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?= from Thunderbird\r\n"
                "Message-ID: <tb1@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "\r\nHello Bob.\r\n")
    assert tb.run(SEND, outgoing, f"Alice <{ALICE}>", "bob@example.test") == ["sent", 0]
    delivered = stack.wait_messages("bob@example.test", 1)[0]
    assert delivered.endswith(b"\n\nHello Bob.\n")  # Maildir files end lines in LF
    assert b"Message-ID: <tb1@example.test>" in delivered
    # mtad offers AUTH only after STARTTLS, so a submission by alice means both happened.
    wait_for(lambda: "auth_user=alice@example.test" in stack.log("mtad"), 60, "the queue's log")
    # Thunderbird's own SMTP log: STARTTLS before AUTH, and no 4xx or 5xx answer.
    smtp = tb.output.read_text(errors="replace")
    assert '"C: STARTTLS"' in smtp and '"C: AUTH PLAIN ' in smtp
    assert smtp.index('"C: STARTTLS"') < smtp.index('"C: AUTH PLAIN ')
    assert not re.search(r'"S: [45][0-9][0-9]', smtp)
    # Its copy in Sent, appended over IMAP.
    other = Observer(stack)
    wait_for(lambda: other.flags("Sent") == {"=?utf-8?q?gr=C3=BC=C3=9Fe?= from Thunderbird":
                                             {"\\Seen"}}, 60, "the copy in Sent")

    status, fetched = tb.run(POP3_FETCH, "bob@example.test", stack.port("pop3"), PASSWORD, cert)
    assert status == 0
    assert fetched == [["grüße from Thunderbird", f"Alice <{ALICE}>"]]
    # Fetched and deleted (DELE, then QUIT): nothing is left on the server.
    wait_for(lambda: stack.messages("bob@example.test") == [], 60, "an empty maildrop")
    assert "deleted=1" in stack.log("mdad")
