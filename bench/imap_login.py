"""Figure: what a login costs, through mailpair's imap-login process and Dovecot's.

Two parts, each run --runs times:

  login latency   --logins sequential logins, each a new connection: greeting,
                  LOGIN, the tagged OK, LOGOUT; plain (--port, 143) and over
                  implicit TLS (--tls-port, 993, handshake included). p50 and
                  p95 in milliseconds.
  memory          --conns connections over TLS, logged in and left idle (no
                  IDLE: a mail client between two polls); PSS summed over the
                  server's process tree (--server-pidfile) before and after,
                  in kB per connection. For mailpair: every mdad process (the
                  login process holds each TLS session and proxies it, the
                  imap process the session); for Dovecot: its tree, i.e. an
                  imap-login (a TLS proxy, one per connection with Dovecot's
                  default service_count = 1) and an imap process each.

Connections that did not log in within --timeout are counted
(`conns_not_logged_in`): Dovecot's imap-login has default_process_limit
(100) processes, each holding one TLS connection, so past 100 it makes new
clients wait; the output says so when it happens.

Password checks: mailpair's auth process remembers a good password for
auth.cache_ttl (60 s), the reference Dovecot has no auth cache
(auth_cache_size = 0): after the first, our logins skip argon2 and
Dovecot's do not. The output says which.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("MAILPAIR_BENCH_SCRIPTS",
                                  str(Path(__file__).resolve().parents[2] / "shared" / "bench")))
import benchlib as B  # noqa: E402 - the shared harness, found through the path above


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_tagged(f, tag: bytes) -> bytes:
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line.startswith(tag + b" "):
            return line


def one_login(a, port: int, tls: bool) -> float:
    t0 = time.monotonic()
    s = socket.create_connection((a.host, port), timeout=60)
    if tls:
        s = tls_context().wrap_socket(s)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"a LOGIN {quote(a.user)} {quote(a.password)}\r\n".encode())
    line = read_tagged(f, b"a")
    elapsed = time.monotonic() - t0
    assert line.startswith(b"a OK"), line
    s.sendall(b"b LOGOUT\r\n")
    read_tagged(f, b"b")
    s.close()
    return elapsed


def percentile(values: list[float], p: float) -> float:
    vals = sorted(values)
    return vals[min(len(vals) - 1, int(round(p / 100 * (len(vals) - 1))))]


async def open_idle(a, sem: asyncio.Semaphore):
    async with sem:
        r, w = await asyncio.open_connection(a.host, a.tls_port, ssl=tls_context())
        await r.readline()
        w.write(f"a LOGIN {quote(a.user)} {quote(a.password)}\r\n".encode())
        while not (line := await r.readline()).startswith(b"a "):
            if not line:
                raise ConnectionError("closed")
        if not line.startswith(b"a OK"):
            raise RuntimeError(line)
        return r, w


async def memory(a) -> tuple[float, int]:
    _, pss0, _ = B.server_mem(a)
    sem = asyncio.Semaphore(16)
    tasks = [asyncio.ensure_future(asyncio.wait_for(open_idle(a, sem), a.timeout))
             for _ in range(a.conns)]
    done = await asyncio.gather(*tasks, return_exceptions=True)
    conns = [c for c in done if not isinstance(c, BaseException)]
    await asyncio.sleep(a.settle)
    _, pss1, nproc = B.server_mem(a)
    per = (pss1 - pss0) / max(1, len(conns))
    print(f"  {len(conns)} of {a.conns} TLS connections logged in; PSS {pss0} -> {pss1} kB "
          f"({nproc} processes): {per:.0f} kB per connection", flush=True)
    for _, w in conns:
        w.write(b"z LOGOUT\r\n")
    for r, w in conns:
        try:
            await asyncio.wait_for(r.read(), 10)
        except Exception:
            pass
        w.close()
    return per, a.conns - len(conns)


def main() -> None:
    ap = B.base_parser(__doc__)
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--tls-port", type=int, default=993)
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = B.finish_args(ap.parse_args())
    results: dict[str, list[float]] = {}
    for _ in range(a.runs):
        for name, port, tls in (("plain", a.port, False), ("tls", a.tls_port, True)):
            times = [one_login(a, port, tls) for _ in range(a.logins)]
            p50, p95 = percentile(times, 50) * 1000, percentile(times, 95) * 1000
            print(f"  {name}: {a.logins} logins, p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                  f"mean {statistics.mean(times) * 1000:.1f} ms", flush=True)
            results.setdefault(f"login_{name}_p50_ms", []).append(p50)
            results.setdefault(f"login_{name}_p95_ms", []).append(p95)
        per, missing = asyncio.run(memory(a))
        results.setdefault("pss_kb_per_idle_tls_conn", []).append(per)
        results.setdefault("conns_not_logged_in", []).append(missing)
        if missing:
            print(f"  {missing} connections were not logged in within {a.timeout:.0f} s: the "
                  "server's process limit caps its connections (Dovecot: default_process_limit "
                  "imap-login processes, one per TLS connection)", flush=True)
    B.report(a, "imap_login", {"logins": a.logins, "conns": a.conns, "port": a.port},
             results)


if __name__ == "__main__":
    main()
