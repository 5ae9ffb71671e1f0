"""common/ipc.py: frames on the wire, and a server and a client on a Unix socket."""

import asyncio
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import ipc
from common.ipc import FrameDecoder, IPCError, encode

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
messages = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@given(msgs=st.lists(messages, max_size=8), data=st.data())
def test_any_split_of_a_stream_decodes_to_the_same_messages(
    msgs: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder()
    out: list[dict[str, Any]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert out == msgs


def test_one_byte_at_a_time() -> None:
    stream = encode({"seq": 1, "op": "x"}) + encode({"seq": 2, "text": "é"})
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        got = decoder.feed(stream[i : i + 1])
        if i < len(stream) - 1 and len(out) + len(got) == 2:
            pytest.fail("a message came out before its last byte")
        out += got
    assert out == [{"seq": 1, "op": "x"}, {"seq": 2, "text": "é"}]


def test_oversize_frame_raises_from_its_header_alone() -> None:
    with pytest.raises(IPCError, match="over the limit"):
        FrameDecoder().feed(struct.pack(">I", ipc.MAX_FRAME + 1))


def test_encode_refuses_an_oversize_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipc, "MAX_FRAME", 16)
    with pytest.raises(IPCError, match="over the limit"):
        encode({"text": "x" * 32})


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_non_json_raises() -> None:
    with pytest.raises(IPCError, match="not JSON"):
        FrameDecoder().feed(frame(b"\xff{not json"))


def test_json_that_is_not_an_object_raises() -> None:
    with pytest.raises(IPCError, match="not a JSON object"):
        FrameDecoder().feed(frame(json.dumps([1, 2]).encode()))


def test_encode_is_length_prefixed_json() -> None:
    data = encode({"a": 1})
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert json.loads(data[4:]) == {"a": 1}


async def _serve_and_call(sock_path: Path) -> None:
    release = asyncio.Event()

    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return {"echo": args["value"]}

    async def fail(args: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("boom")

    async def wait(args: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"waited": True}

    async def set_(args: dict[str, Any]) -> dict[str, Any]:
        release.set()
        return {"set": True}

    server = await ipc.serve(
        ipc.bind_unix(sock_path), {"echo": echo, "fail": fail, "wait": wait, "set": set_}
    )
    client = ipc.Client(sock_path, timeout=5)
    try:
        result = await client.call("echo", value={"k": [1, "two"]})
        assert result == {"echo": {"k": [1, "two"]}}

        with pytest.raises(IPCError, match="failed: ValueError: boom"):
            await client.call("fail")
        with pytest.raises(IPCError, match="failed: bad request for op 'nope'"):
            await client.call("nope")
        # The connection survives failed requests.
        assert (await client.call("echo", value=3))["echo"] == 3

        # "wait" only finishes after "set" is served: one connection serves both at once.
        waited, was_set = await asyncio.wait_for(
            asyncio.gather(client.call("wait"), client.call("set")), 5
        )
        assert waited == {"waited": True} and was_set == {"set": True}

        # Many calls in flight get their own answers.
        replies = await asyncio.gather(*(client.call("echo", value=i) for i in range(50)))
        assert [r["echo"] for r in replies] == list(range(50))
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_serve_and_client_on_a_unix_socket(tmp_path: Path) -> None:
    asyncio.run(_serve_and_call(tmp_path / "t.sock"))


async def _no_server(sock_path: Path) -> None:
    client = ipc.Client(sock_path, timeout=2)
    with pytest.raises(IPCError, match="cannot reach"):
        await client.call("echo")


def test_client_without_a_server(tmp_path: Path) -> None:
    asyncio.run(_no_server(tmp_path / "absent.sock"))


async def _timeout(sock_path: Path) -> None:
    async def never(args: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    server = await ipc.serve(ipc.bind_unix(sock_path), {"never": never})
    client = ipc.Client(sock_path, timeout=5)
    try:
        with pytest.raises(IPCError, match="never"):
            await client.call("never", timeout=0.2)
    finally:
        await client.close()
        server.close()


def test_call_times_out(tmp_path: Path) -> None:
    asyncio.run(_timeout(tmp_path / "t.sock"))


async def _reconnect(sock_path: Path) -> None:
    connections = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A bare peer: the first connection dies mid-request, the second answers.
        nonlocal connections
        connections += 1
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for msg in decoder.feed(data):
                if connections == 1:
                    writer.close()
                    return
                reply = {"seq": msg["seq"], "ok": True, "result": {"conn": connections}}
                writer.write(encode(reply))
        writer.close()

    server = await asyncio.start_unix_server(peer, path=str(sock_path))
    client = ipc.Client(sock_path, timeout=5)
    try:
        with pytest.raises(IPCError, match="closed the connection"):
            await client.call("ping")
        assert (await client.call("ping"))["conn"] == 2
    finally:
        await client.close()
        server.close()


def test_client_reconnects_after_its_peer_went_away(tmp_path: Path) -> None:
    asyncio.run(_reconnect(tmp_path / "t.sock"))


def test_drain_answers_what_is_in_flight_and_idempotent_calls_move_to_the_new_server(tmp_path):
    """A reload: the old server finishes its answer, a retried call reaches the new one."""
    path = Path(f"/tmp/ipc-drain-{os.getpid()}.sock")

    async def scenario():
        release = asyncio.Event()
        served_by = []

        async def slow(args):
            await release.wait()
            served_by.append("old")
            return {"who": "old"}

        async def fast(args):
            served_by.append("new")
            return {"who": "new"}

        sock = ipc.bind_unix(path)
        spare = sock.dup()  # the new process's copy of the listening socket
        old = await ipc.serve(sock, {"op": slow})
        client = ipc.Client(path, timeout=5)
        first = asyncio.create_task(client.call("op"))
        while not old.inflight:
            await asyncio.sleep(0.001)
        draining = asyncio.create_task(old.drain(grace=5))
        await asyncio.sleep(0)
        release.set()
        assert (await first)["who"] == "old"  # answered, not cut
        await draining
        new = await ipc.serve(spare, {"op": fast})
        # The old connection is closed; an idempotent call reconnects once.
        assert (await client.call("op", idempotent=True))["who"] == "new"
        await client.close()
        new.close()
        return served_by

    try:
        assert asyncio.run(scenario()) == ["old", "new"]
    finally:
        path.unlink(missing_ok=True)


async def _descriptors(sock_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "handed.txt"

    async def open_for_writing(args: dict[str, Any]) -> ipc.WithFds:
        # Like the queue: the file is made here, the caller only gets the descriptor.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return ipc.WithFds({"name": target.name}, [fd])

    @ipc.takes_fds
    async def read_given(args: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        # Like the relay: it reads what it is handed, by descriptor.
        (fd,) = fds
        try:  # at offset 0: every copy of the descriptor shares one file position
            return {"text": os.pread(fd, 1000, 0).decode(), "tag": args["tag"]}
        finally:
            os.close(fd)

    server = await ipc.serve(ipc.bind_unix(sock_path),
                             {"open": open_for_writing, "read": read_given})
    client = ipc.Client(sock_path, timeout=5)
    try:
        result, fds = await client.call_fds("open")
        assert result == {"name": "handed.txt"} and len(fds) == 1
        os.write(fds[0], b"written through the descriptor")
        os.close(fds[0])
        fd = os.open(target, os.O_RDONLY)
        try:
            # Many at once, each with its own descriptor, interleaved with plain calls.
            replies = await asyncio.gather(*(client.call_fds("read", fds=[fd], tag=i)
                                             for i in range(20)))
        finally:
            os.close(fd)
        for i, (r, got) in enumerate(replies):
            assert got == [] and r == {"text": "written through the descriptor", "tag": i}
        # A plain handler's unwanted descriptors are closed on its side, not leaked.
        before = len(os.listdir("/proc/self/fd"))
        fd = os.open(target, os.O_RDONLY)
        with pytest.raises(IPCError, match="bad request"):
            await client.call_fds("nope", fds=[fd])
        os.close(fd)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_descriptors_go_both_ways_with_their_frames(tmp_path: Path) -> None:
    asyncio.run(_descriptors(tmp_path / "t.sock", tmp_path))


class _Taker:
    async def take(self, args: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        (fd,) = fds
        try:
            return {"size": os.fstat(fd).st_size, "who": args["who"]}
        finally:
            os.close(fd)

    @ipc.takes_fds  # marked in the class body, as the relay's handlers are
    async def marked(self, args: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        return await self.take(args, fds)


async def _bound_method(sock_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"12345")
    server = await ipc.serve(ipc.bind_unix(sock_path), {"take": ipc.takes_fds(_Taker().take),
                                                         "marked": _Taker().marked})
    client = ipc.Client(sock_path, timeout=5)
    fd = os.open(target, os.O_RDONLY)
    try:
        assert await client.call_fds("take", fds=[fd], who="x") == ({"size": 5, "who": "x"}, [])
        assert await client.call_fds("marked", fds=[fd], who="y") == ({"size": 5, "who": "y"}, [])
    finally:
        os.close(fd)
        await client.close()
        server.close()
        await server.wait_closed()


def test_a_bound_method_can_take_descriptors(tmp_path: Path) -> None:
    asyncio.run(_bound_method(tmp_path / "t.sock", tmp_path))


async def _send_fails(sock_path: Path) -> None:
    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return {"x": args["x"]}

    server = await ipc.serve(ipc.bind_unix(sock_path), {"echo": echo})
    client = ipc.Client(sock_path, timeout=5)
    try:
        assert await client.call("echo", x=1) == {"x": 1}
        chan = client._chan
        assert chan is not None

        async def broken(*a: Any) -> None:  # the peer went away; the read loop hasn't seen it
            raise BrokenPipeError(32, "Broken pipe")
        chan.send = broken  # type: ignore[method-assign]
        assert await client.call("echo", idempotent=True, x=2) == {"x": 2}
        assert client._chan is not chan
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_an_idempotent_call_whose_send_fails_goes_out_on_a_new_connection(tmp_path: Path) -> None:
    asyncio.run(_send_fails(tmp_path / "t.sock"))
