"""DATA goes to the spool as it arrives: memory, exactness, a kill -9 mid-DATA, timeouts."""

from __future__ import annotations

import smtplib
import socket
import threading
import time

from tests.conftest import wait_for

MB = 1024 * 1024


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def big_message(n: int, size: int) -> bytes:
    line = f"{n:03d} " + "x" * 70 + "\r\n"
    lines = size // len(line)
    return (f"Subject: big {n}\r\nX-N: {n}\r\n\r\n".encode()
            + "".join(f"{i:08d}{line}" for i in range(lines)).encode())


def open_data(stack, rcpt: str) -> smtplib.SMTP:
    s = stack.smtp()
    s.ehlo()
    assert s.mail("s@remote.test")[0] == 250
    assert s.rcpt(rcpt)[0] == 250
    s.putcmd("DATA")
    code, _ = s.getreply()
    assert code == 354
    return s


def test_concurrent_large_messages_do_not_grow_the_smtp_process(bare_stack):
    stack = bare_stack
    stack.write_config(max_message_size=8 * MB)
    stack.start("mdad")
    stack.start("mtad")
    pid = stack.state("mtad")["children"]["smtp"]
    with stack.smtp() as s:  # warm up: code paths loaded, buffers made once
        s.sendmail("s@remote.test", ["bob@example.test"], big_message(99, MB))
    before = status_kb(pid, "VmHWM")
    count, size = 4, 5 * MB
    bodies = [big_message(n, size) for n in range(count)]
    # Each client sends half its message, waits for the others, then the rest:
    # all are in the middle of DATA at once.
    halfway = threading.Barrier(count, timeout=60)
    replies: dict[int, tuple[int, bytes]] = {}

    def client(n: int) -> None:
        s = open_data(stack, "alice@example.test")
        body = bodies[n]
        s.sock.sendall(body[: size // 2])
        halfway.wait()
        s.sock.sendall(body[size // 2 :] + b".\r\n")
        replies[n] = s.getreply()
        s.quit()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(replies) == list(range(count))
    assert all(code == 250 for code, _ in replies.values()), replies
    grown = (status_kb(pid, "VmHWM") - before) * 1024
    # aiosmtpd's own DATA held each message two or three times over (~60 MB here).
    assert grown < count * size / 4, f"the smtp process grew by {grown / MB:.1f} MB"
    got = stack.wait_messages("alice@example.test", count, timeout=60)
    by_n = {int(m.split(b"\nX-N: ")[1].split(b"\n")[0]): m for m in got}
    for n, body in enumerate(bodies):
        assert by_n[n].endswith(b"\n" + body.replace(b"\r\n", b"\n")), n


def test_kill9_mid_data_loses_nothing_acknowledged_and_delivers_no_half(bare_stack):
    stack = bare_stack
    stack.start("mtad")  # no MDA yet: what was accepted waits in the queue
    with stack.smtp() as s:
        assert s.sendmail("s@remote.test", ["alice@example.test"],
                          b"X-Seq: 1\r\n\r\naccepted before\r\n") == {}
    s = open_data(stack, "alice@example.test")
    s.sock.sendall(b"X-Seq: 2\r\n\r\n" + b"HALF A MESSAGE\r\n" * 20000)
    incoming = stack.root / "spool" / "incoming"
    wait_for(lambda: any(p.stat().st_size > 100_000 for p in incoming.glob("*.msg")), 60,
             "the half message to be on its way to the spool")
    stack.kill9("mtad")
    s.close()
    assert len(stack.queue_files()) == 1
    stack.start("mdad")
    stack.start("mtad")
    with stack.smtp() as s:
        assert s.sendmail("s@remote.test", ["alice@example.test"],
                          b"X-Seq: 3\r\n\r\naccepted after\r\n") == {}
    msgs = stack.wait_messages("alice@example.test", 2, timeout=30)
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
    msgs = stack.messages("alice@example.test")
    assert len(msgs) == 2
    assert b"accepted before" in b"".join(msgs) and b"accepted after" in b"".join(msgs)
    assert not any(b"HALF" in m for m in msgs)
    # What the dead process left was never acknowledged: it never reaches the queue.
    assert not list((stack.root / "spool" / "queue").glob("*.msg"))


def test_a_slow_sender_is_not_cut_off_while_it_keeps_sending(bare_stack):
    stack = bare_stack
    stack.write_config(session_timeout=3)
    stack.start("mdad")
    stack.start("mtad")
    s = open_data(stack, "alice@example.test")
    s.sock.sendall(b"Subject: slow\r\n\r\n")
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 7:  # over twice the timeout, a line every 0.5 s
        s.sock.sendall(f"line {n}\r\n".encode())
        n += 1
        time.sleep(0.5)
    s.sock.sendall(b".\r\n")
    code, msg = s.getreply()
    assert code == 250, msg
    s.quit()
    (got,) = stack.wait_messages("alice@example.test", 1)
    assert got.endswith(b"".join(f"line {i}\n".encode() for i in range(n)))


def test_a_sender_silent_in_the_middle_of_data_is_cut_off(bare_stack):
    stack = bare_stack
    stack.write_config(session_timeout=2)
    stack.start("mdad")
    stack.start("mtad")
    with socket.create_connection(stack.address("smtp"), timeout=60) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"HELO slow.remote.test\r\nMAIL FROM:<s@remote.test>\r\n"
                  b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        c.sendall(b"Subject: never ends\r\n\r\nsome of it\r\n")
        started = time.monotonic()
        assert f.read() == b""  # closed by the server, no reply: nothing was promised
        assert time.monotonic() - started < 60
    incoming = stack.root / "spool" / "incoming"
    wait_for(lambda: not list(incoming.iterdir()), 60, "the partial file to be removed")
    assert stack.queue_files() == []
    assert stack.messages("alice@example.test") == []
