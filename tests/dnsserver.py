"""A DNS server for the tests, on 127.0.0.1 (UDP and TCP, one ephemeral port).

It answers from a dict the test controls, so mtad's relay can be pointed
at it with relay.nameservers and never asks a real DNS server:

    dns.zone["remote.test"] = {"MX": ["10 mx.remote.test."]}
    dns.zone["mx.remote.test"] = {"A": ["127.0.0.2"], "AAAA": ["::1"]}
    dns.zone["broken.test"] = {"MX": SERVFAIL}   # or the whole name: = SERVFAIL
    dns.zone["slow.test"] = TIMEOUT              # no answer at all

A name missing from the dict is NXDOMAIN; a name without the asked type
is an empty answer (NODATA). Every question is recorded in `queries`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SERVFAIL = "SERVFAIL"
TIMEOUT = "TIMEOUT"


class DNSServer:
    def __init__(self) -> None:
        self.zone: dict[str, object] = {}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.udp, self.tcp = self._bind()
        self.port = self.udp.getsockname()[1]
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]

    @staticmethod
    def _bind() -> tuple[socket.socket, socket.socket]:
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            return udp, tcp
        raise RuntimeError("no port free for both UDP and TCP")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DNSServer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for s in (self.udp, self.tcp):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def asked(self, name: str, rdtype: str | None = None) -> int:
        with self._lock:
            return sum(1 for n, t in self.queries if n == name and rdtype in (None, t))

    # -- answers ---------------------------------------------------------------------

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            entry = self.zone.get(name)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if isinstance(entry, dict):
            entry = entry.get(rdtype, [])
        if entry == TIMEOUT:
            return None
        if entry == SERVFAIL:
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif entry is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif entry:
            reply.answer.append(dns.rrset.from_text_list(
                question.name, 0, dns.rdataclass.IN, question.rdtype, list(entry)))
        return reply.to_wire()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            try:
                out = self.answer(wire)
            except Exception:  # a malformed question: no answer, like a lost packet
                continue
            if out is not None:
                with contextlib.suppress(OSError):
                    self.udp.sendto(out, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_client, args=(conn,), daemon=True).start()

    def _tcp_client(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                while True:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    (size,) = struct.unpack(">H", head)
                    out = self.answer(conn.recv(size, socket.MSG_WAITALL))
                    if out is not None:
                        conn.sendall(struct.pack(">H", len(out)) + out)
            except (OSError, ValueError):
                return
