"""mdad's login processes: IMAP and POP3 before authentication (see service.py)."""
