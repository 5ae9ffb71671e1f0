"""IMAP4rev1 for the MDA.

The protocol layer has no I/O: `parser` turns client bytes into typed
events, `response` turns values into the bytes a server writes, `search`
decides whether one message matches a SEARCH program, and common/mutf7
maps mailbox names to and from the wire. The session and server sit on top.
"""
