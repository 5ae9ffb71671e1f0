"""POP3 for the MDA (RFC 1939 with CAPA, STLS, AUTH PLAIN, TOP and UIDL).

`parser` turns client bytes into typed commands without I/O; `maildrop` is
a session's locked snapshot of a user's INBOX over the store; `session`
holds the rules (AUTHORIZATION, TRANSACTION, UPDATE); `server` is the wire:
sockets, TLS, timeouts. It shares the store with IMAP and imports nothing
of it.
"""
