"""OpenDKIM's opendkim-testmsg (opendkim-tools) as an independent DKIM verifier for tests.

It asks the system's resolver, so it runs in a mount namespace of its own whose
/etc/resolv.conf names a test DNS server on port 53 of a random loopback address.
Missing tools skip the test, except under CI=true, where they fail it.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.dnsserver import DNSServer

__all__ = ["Port53DNS", "missing", "opendkim_testmsg"]


def missing(what: str, install: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} missing under CI (apt-get install {install})")
    pytest.skip(f"{what} missing: apt-get install {install}")


class Port53DNS(DNSServer):
    """The test DNS server on port 53 of a random 127/8 address, as libc's resolver needs."""

    @staticmethod
    def _bind() -> tuple[socket.socket, socket.socket]:
        for _ in range(50):
            host = "127." + ".".join(str(random.randrange(1, 255)) for _ in range(3))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((host, 53))
                tcp.bind((host, 53))
            except OSError as e:
                udp.close()
                tcp.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            tcp.listen(16)
            return udp, tcp
        raise RuntimeError("no loopback address with port 53 free")


def opendkim_testmsg(message: bytes, tmp_path: Path, zone: dict) -> subprocess.CompletedProcess:
    """opendkim-testmsg on `message`, its DNS answered from `zone` (DNSServer.zone's form);
    exit status 0 and nothing on stderr: every signature verified."""
    if shutil.which("opendkim-testmsg") is None:
        missing("opendkim-testmsg", "opendkim-tools")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        missing("unshare as root", "util-linux (and run as root)")
    dns = Port53DNS().start()
    try:
        dns.zone.update(zone)
        conf = tmp_path / "resolv.conf"
        conf.write_text(f"nameserver {dns.udp.getsockname()[0]}\noptions timeout:10\n")
        script = f"mount --bind {conf} /etc/resolv.conf && exec opendkim-testmsg"
        return subprocess.run(["unshare", "--mount", "sh", "-c", script], input=message,
                              capture_output=True, timeout=60)
    finally:
        dns.stop()
