"""DKIM signing of outbound mail (RFC 6376, RFC 8463): the keys and the signatures.

- `keys`: key generation, the files they live in, the loader and the DNS TXT record;
- `sign`: the DKIM-Signature fields to put on top of one message.

Verification of inbound mail is a check like the others, in mta/checks/dkimverify.py.
Only the process that signs (the relay) may read the private keys.
"""
