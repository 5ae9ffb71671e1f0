"""IMAP commands on the messages of the selected mailbox: the session's table.

Each handler is an async generator of response bytes ending with the
tagged answer; the work lives in one module per command family:
fetch_cmd (FETCH), search_cmd (SEARCH, ESEARCH), store_cmd (STORE),
copy_cmd (COPY, MOVE, EXPUNGE), with what they share in msgset.
"""

from __future__ import annotations

from mda.imap import commands as C
from mda.imap.copy_cmd import copy, expunge, move
from mda.imap.fetch_cmd import fetch
from mda.imap.search_cmd import search
from mda.imap.store_cmd import store

HANDLERS = {
    C.Fetch: fetch,
    C.Store: store,
    C.Search: search,
    C.Copy: copy,
    C.Move: move,
    C.Expunge: expunge,
}
