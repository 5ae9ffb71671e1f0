"""POP3: the parser, the session rules over a fake maildrop, the maildrop over the store."""
