"""Two mail servers and a DNS server, all on loopback, for outbound mail tests.

`sender` is the usual stack (example.test on 127.0.0.1); `remote` is a
second mtad + mdad for remote.test on 127.0.0.2, at a port fixed before
either starts so that the sender's relay.port can name it even while the
remote is down. The sender's relay asks only `dns`, which says that the
MX of remote.test is mx.remote.test: ::1 (where nothing listens, so IPv6
is tried and fails) and 127.0.0.2.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.dnsserver import DNSServer

REMOTE_IP = "127.0.0.2"
REMOTE_USERS = ("rob@remote.test", "ann@remote.test")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Net:
    """What a test steers: the DNS zone, the remote stack, the sender's relay settings."""

    def __init__(self, dns: DNSServer, sender: Stack, remote: Stack, port: int) -> None:
        self.dns = dns
        self.sender = sender
        self.remote = remote
        self.port = port
        self.relay: dict[str, object] = {}
        self.mta: dict[str, object] = {}

    def configure(self, **relay: object) -> None:
        """The sender's [relay] (and mta_* keys for [mta]); written before it starts."""
        self.mta = {k[4:]: v for k, v in relay.items() if k.startswith("mta_")}
        self.relay = {
            "nameservers": [self.dns.address], "dns_timeout": 2, "port": self.port,
            "connect_timeout": 5, "command_timeout": 20, "delay_warning": 0,
            **{k: v for k, v in relay.items() if not k.startswith("mta_")},
        }
        self.sender.write_config(relay=self.relay, **self.mta)

    def configure_remote(self, **mta: object) -> None:
        """The remote's configuration, with mta keys of a test's own; before it starts."""
        self.remote.write_config(hostname="mx.remote.test", domain="remote.test",
                                 smtp=[f"{REMOTE_IP}:{self.port}"],
                                 submission=[f"{REMOTE_IP}:0"],
                                 submissions=[f"{REMOTE_IP}:0"], **mta)

    def start_sender(self, **relay: object) -> Stack:
        self.configure(**relay)
        self.sender.start("mdad")
        self.sender.start("mtad")
        return self.sender

    def start_remote(self) -> Stack:
        self.remote.start("mdad")
        self.remote.start("mtad")
        return self.remote


@pytest.fixture
def net(bare_stack: Stack, tmp_path: Path, request) -> Iterator[Net]:
    dns = DNSServer().start()
    dns.zone.update({
        "remote.test": {"MX": ["10 mx.remote.test."]},
        "mx.remote.test": {"A": [REMOTE_IP], "AAAA": ["::1"]},
    })
    root = Path(f"/tmp/mpr-{os.getpid()}-{tmp_path.name[-20:]}")
    shutil.rmtree(root, ignore_errors=True)
    logs = tmp_path / "remote"
    logs.mkdir()
    remote = Stack(root, logs)
    port = free_port(REMOTE_IP)
    n = Net(dns, bare_stack, remote, port)
    n.configure_remote()
    for u in REMOTE_USERS:
        remote.add_user(u)
    n.configure()
    try:
        yield n
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for d in ("mdad", "mtad"):
                print(f"----- remote {d} log -----\n{remote.log(d)[-20000:]}")
        remote.stop_all()
        dns.stop()
        shutil.rmtree(root, ignore_errors=True)
