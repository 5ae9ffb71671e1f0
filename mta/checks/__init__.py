"""Checks of inbound mail: SPF, DKIM, DMARC, ARC and the Authentication-Results header.

Each check reports, none rejects: the results go into one
Authentication-Results header (RFC 8601) and filtering stays with the user.

- `spf_record`: the SPF record grammar (RFC 7208 section 12), no I/O;
- `spf_macro`: macro expansion (RFC 7208 section 7), no I/O;
- `spf`: check_host() over `dnslookup`, with the lookup limits;
- `dmarc_record`: the DMARC record's tags (RFC 7489 section 6.3), no I/O;
- `orgdomain`: the organisational domain (the Public Suffix List);
- `dkimverify`: every DKIM signature's result (dkimpy, in a thread, DNS through `dnslookup`);
- `arcverify`: the ARC chain's result (RFC 8617), likewise;
- `dmarc`: policy discovery and identifier alignment over `dnslookup`;
- `authresults`: the header we add, and the ones claiming our name that we remove;
- `dnslookup`: the few DNS questions these checks ask, on dnspython's asyncio resolver;
- `inbound`: all of them for one message, and the field put on its header.
"""
