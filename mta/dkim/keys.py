"""DKIM keys: generation, files, loading, and the TXT record to publish.

On disk, one directory per signing domain and two files per selector, PEM
(PKCS#8, unencrypted), either or both present:

    <keydir>/<domain>/<selector>.rsa.key       RSA-2048 (rsa-sha256, RFC 6376)
    <keydir>/<domain>/<selector>.ed25519.key   Ed25519 (ed25519-sha256, RFC 8463)

Beside them, mta/dkim/rotation.py keeps `active` (the selector to sign with)
and `rotation.json` (a key rotation under way).

The files are written 0640 (the installer or mta-ctl makes them root:<signer>),
created exclusively unless the caller forces an overwrite, and each is put in
place by rename, so a crash leaves the old key or the new one, never half a key.
The loader refuses a key any other user may read: a leaked key lets anyone sign
as the domain, and that is worth a refused start over a silent warning.

The TXT records (RFC 6376 3.6.1, RFC 8463 4): "v=DKIM1; k=rsa; p=<base64 of the
DER SubjectPublicKeyInfo>" at <selector>._domainkey.<domain>, and "v=DKIM1;
k=ed25519; p=<base64 of the 32 raw public key octets>" at
<selector>-ed25519._domainkey.<domain>: one name per algorithm, because a
verifier takes one TXT record of a name (dkimpy the first), and with both keys
at one name half the signatures would meet the other algorithm's key and fail.
The Ed25519 signature's s= is therefore <selector>-ed25519 (dns_selector).
"""

from __future__ import annotations

import base64
import grp
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = ["ALGORITHMS", "DKIMKey", "DKIMKeyError", "dns_selector", "generate", "key_path",
           "load", "selectors", "share_with_group", "txt_name", "txt_names", "txt_record",
           "txt_strings"]

ALGORITHMS = ("ed25519", "rsa")  # the file suffixes, in the order we sign
RSA_BITS = 2048
MIN_RSA_BITS = 1024  # RFC 8301 3.2: verifiers need not accept less; we refuse to sign with less
# A selector is one DNS label (RFC 6376 3.1 allows dotted ones; one label keeps file names flat).
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# The Ed25519 key's DNS selector is the selector plus this (see above).
ED25519_SUFFIX = "-ed25519"
# So that <selector>-ed25519 is one DNS label too (63 octets at most).
MAX_SELECTOR = 63 - len(ED25519_SUFFIX)
_DOMAIN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


class DKIMKeyError(Exception):
    """A key file is missing, unreadable, unsafe or not a DKIM key."""


@dataclass(frozen=True)
class DKIMKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def signature_algorithm(self) -> str:
        return f"{self.algorithm}-sha256"

    def dkimpy_private(self) -> bytes:
        """The key as dkimpy's sign() takes it: PEM (RSA), base64 of the seed (Ed25519)."""
        if self.algorithm == "rsa":
            return self.private.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption())
        raw = self.private.private_bytes(serialization.Encoding.Raw,
                                         serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
        return base64.b64encode(raw)

    @property
    def dns_selector(self) -> str:
        """The s= of this key's signature: the label its TXT record is published under."""
        return dns_selector(self.selector, self.algorithm)

    def txt_name(self) -> str:
        return txt_name(self.domain, self.selector, self.algorithm)

    def txt_record(self) -> str:
        return txt_record(self.algorithm, self.private)


def _check_names(domain: str, selector: str) -> None:
    if not _DOMAIN.match(domain):
        raise ValueError(f"{domain!r} is not a domain name")
    if not _LABEL.match(selector) or len(selector) > MAX_SELECTOR:
        raise ValueError(f"{selector!r} is not a selector (one DNS label of at most "
                         f"{MAX_SELECTOR} letters, digits, -)")
    if selector.lower().endswith(ED25519_SUFFIX):
        # Its RSA name would be the Ed25519 name of another selector.
        raise ValueError(f"{selector!r} is not a selector: {ED25519_SUFFIX} is the suffix "
                         f"of the Ed25519 keys' DNS names")


def _is_selector(selector: str) -> bool:
    """A file name's selector we would have made (one left by hand may not be)."""
    try:
        _check_names("x", selector)
    except ValueError:
        return False
    return True


def key_path(keydir: Path, domain: str, selector: str, algorithm: str) -> Path:
    _check_names(domain, selector)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown DKIM key algorithm {algorithm!r}")
    return Path(keydir) / domain.lower() / f"{selector}.{algorithm}.key"


def dns_selector(selector: str, algorithm: str) -> str:
    """The DNS label of the selector's key of `algorithm`: RSA keeps the selector."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown DKIM key algorithm {algorithm!r}")
    return selector + ED25519_SUFFIX if algorithm == "ed25519" else selector


def txt_name(domain: str, selector: str, algorithm: str) -> str:
    """Where the selector's key of `algorithm` is published."""
    return f"{dns_selector(selector, algorithm)}._domainkey.{domain.lower()}"


def txt_names(domain: str, selector: str) -> list[str]:
    """Both algorithms' names, in signing order."""
    return [txt_name(domain, selector, a) for a in ALGORITHMS]


def txt_record(algorithm: str,
               private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    public = private.public_key()
    if algorithm == "rsa":
        der = public.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        der = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k={algorithm}; p={base64.b64encode(der).decode('ascii')}"


def txt_strings(text: str) -> str:
    """The record as a zone file writes it: quoted strings of at most 255 octets (RFC 1035 3.3)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


def _new_private(algorithm: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ed25519.Ed25519PrivateKey.generate()


def _write_new(path: Path, data: bytes, force: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.fchmod(fd, 0o640)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: no overwrite race
    finally:
        if tmp.exists():
            tmp.unlink()


def generate(keydir: Path, domain: str, selector: str, algorithms: tuple[str, ...] = ALGORITHMS,
             force: bool = False) -> list[DKIMKey]:
    """New keys for a selector; FileExistsError when one exists and not `force`."""
    paths = {a: key_path(keydir, domain, selector, a) for a in algorithms}
    if not force:
        taken = [str(p) for p in paths.values() if p.exists()]
        if taken:
            raise FileExistsError(f"selector {selector} of {domain} already has keys: "
                                  + ", ".join(taken))
    made = []
    for algorithm, path in paths.items():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        private = _new_private(algorithm)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        _write_new(path, pem, force)
        made.append(DKIMKey(domain.lower(), selector, algorithm, private))
    return made


def share_with_group(keydir: Path, domain: str, group: str) -> bool:
    """Make the domain's key dir and its files root:<group> (the signer's), when we are root
    and the group exists; False when not done (a development checkout, run as a user)."""
    if os.geteuid() != 0:
        return False
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    folder = Path(keydir) / domain.lower()
    # The keys, and the rotation's files beside them (the signer reads "active").
    for p in [folder, *(f for f in folder.iterdir() if f.is_file())]:
        os.chown(p, 0, gid, follow_symlinks=False)
    return True


def _load_file(path: Path, domain: str, selector: str, algorithm: str) -> DKIMKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise DKIMKeyError(f"cannot open DKIM key {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise DKIMKeyError(f"DKIM key {path} is not a regular file")
        if mode & 0o007:
            raise DKIMKeyError(f"DKIM key {path} is accessible to every user (mode "
                            f"{stat.S_IMODE(mode):04o}); make it 0640 root:<signer> "
                            f"(chmod o= {path})")
        data = f.read()
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise DKIMKeyError(f"DKIM key {path} is not an unencrypted PEM private key: {e}") from None
    if algorithm == "rsa":
        if not isinstance(private, rsa.RSAPrivateKey):
            raise DKIMKeyError(f"DKIM key {path} is not an RSA key")
        if private.key_size < MIN_RSA_BITS:
            raise DKIMKeyError(f"DKIM key {path} has {private.key_size} bits, "
                            f"fewer than {MIN_RSA_BITS} (RFC 8301)")
    elif not isinstance(private, ed25519.Ed25519PrivateKey):
        raise DKIMKeyError(f"DKIM key {path} is not an Ed25519 key")
    return DKIMKey(domain.lower(), selector, algorithm, private)


def load(keydir: Path, domain: str, selector: str) -> list[DKIMKey]:
    """The selector's keys that exist (Ed25519 first); DKIMKeyError if none or one is unsafe."""
    keys = [_load_file(p, domain, selector, a) for a in ALGORITHMS
            if (p := key_path(keydir, domain, selector, a)).exists()]
    if not keys:
        raise DKIMKeyError(f"no DKIM key for selector {selector} of {domain} in {keydir}")
    return keys


def selectors(keydir: Path, domain: str) -> list[str]:
    """The selectors that have a key file for the domain, sorted."""
    _check_names(domain, "x")
    folder = Path(keydir) / domain.lower()
    if not folder.is_dir():
        return []
    found = set()
    for p in folder.iterdir():
        for a in ALGORITHMS:
            sel = p.name.removesuffix(f".{a}.key")
            if sel != p.name and _is_selector(sel):
                found.add(sel)
    return sorted(found)
