"""Feeding helpers shared by the IMAP parser tests."""

from __future__ import annotations

from collections.abc import Iterable

from mda.imap.events import Event
from mda.imap.parser import CommandReader, Limits


def run(chunks: Iterable[bytes], limits: Limits | None = None) -> list[Event | str]:
    """All events for the chunks; a pause is recorded as "PAUSE" and the
    reader resumed, as a session that answers at once would."""
    reader = CommandReader(limits)
    out: list[Event | str] = []

    def take(events: list[Event]) -> None:
        out.extend(events)
        while reader.paused:
            out.append("PAUSE")
            events = reader.resume()
            out.extend(events)

    for chunk in chunks:
        take(reader.feed(chunk))
    return out


def one(line: bytes, limits: Limits | None = None) -> Event:
    """The single event of one complete command (CRLF added)."""
    events = [e for e in run([line + b"\r\n"], limits) if e != "PAUSE"]
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, Event)
    return event
