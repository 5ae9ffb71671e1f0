"""DKIM key files: generation, no overwrite, the loader's refusals, the TXT record."""

from __future__ import annotations

import os

import dkim
import pytest

from mta.dkim import keys
from mta.dkim.keys import DKIMKeyError


def test_generate_writes_both_keys_0640_and_loads_them(tmp_path):
    made = keys.generate(tmp_path, "Example.ORG", "s2026")
    assert [k.algorithm for k in made] == ["ed25519", "rsa"]
    for a in ("ed25519", "rsa"):
        path = tmp_path / "example.org" / f"s2026.{a}.key"
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert os.stat(path).st_mode & 0o777 == 0o640
    loaded = keys.load(tmp_path, "example.org", "s2026")
    assert [(k.algorithm, k.txt_record()) for k in loaded] == \
        [(k.algorithm, k.txt_record()) for k in made]
    assert loaded[1].private.key_size == 2048
    assert keys.selectors(tmp_path, "example.org") == ["s2026"]


def test_an_existing_selector_is_not_overwritten_without_force(tmp_path):
    first = keys.generate(tmp_path, "example.org", "s1", ("rsa",))
    with pytest.raises(FileExistsError, match="s1"):
        keys.generate(tmp_path, "example.org", "s1")
    assert not (tmp_path / "example.org" / "s1.ed25519.key").exists()
    again = keys.generate(tmp_path, "example.org", "s1", ("rsa",), force=True)
    assert again[0].txt_record() != first[0].txt_record()
    assert keys.load(tmp_path, "example.org", "s1")[0].txt_record() == again[0].txt_record()


def test_loader_refuses_a_key_every_user_may_read(tmp_path):
    keys.generate(tmp_path, "example.org", "s1", ("ed25519",))
    path = tmp_path / "example.org" / "s1.ed25519.key"
    os.chmod(path, 0o644)
    with pytest.raises(DKIMKeyError, match="accessible to every user.*0644"):
        keys.load(tmp_path, "example.org", "s1")


def test_loader_refuses_missing_and_foreign_keys(tmp_path):
    with pytest.raises(DKIMKeyError, match="no DKIM key"):
        keys.load(tmp_path, "example.org", "s1")
    keys.generate(tmp_path, "example.org", "s1", ("ed25519",))
    (tmp_path / "example.org" / "s1.ed25519.key").rename(
        tmp_path / "example.org" / "s1.rsa.key")
    with pytest.raises(DKIMKeyError, match="not an RSA key"):
        keys.load(tmp_path, "example.org", "s1")


@pytest.mark.parametrize("selector", ["../x", "a.b", "", "-a", "a b", "s1-ed25519", "S1-ED25519",
                                      "a" * 56])
def test_selector_must_be_one_label(tmp_path, selector):
    with pytest.raises(ValueError):
        keys.generate(tmp_path, "example.org", selector)


def test_txt_records_are_keys_dkimpy_reads(tmp_path):
    for k in keys.generate(tmp_path, "example.org", "s1"):
        text = k.txt_record()
        assert text.startswith(f"v=DKIM1; k={k.algorithm}; p=")
        _, size, ktag, _ = dkim.evaluate_pk(b"s1._domainkey.example.org.", text.encode())
        assert (ktag.decode(), size) == (k.algorithm, 2048 if k.algorithm == "rsa" else 256)
        quoted = keys.txt_strings(text)
        parts = quoted[1:-1].split('" "')
        assert "".join(parts) == text and all(len(p) <= 255 for p in parts)

def test_a_key_file_of_a_refused_selector_is_not_a_selector(tmp_path):
    keys.generate(tmp_path, "example.org", "s1", ("rsa",))
    (tmp_path / "example.org" / "s1.rsa.key").rename(
        tmp_path / "example.org" / "s1-ed25519.rsa.key")
    assert keys.selectors(tmp_path, "example.org") == []


def test_each_algorithm_has_its_own_name(tmp_path):
    # A verifier takes one TXT record of a name: two keys at one name fail half the mail.
    assert keys.txt_name("Example.org", "s1", "rsa") == "s1._domainkey.example.org"
    assert keys.txt_name("Example.org", "s1", "ed25519") == "s1-ed25519._domainkey.example.org"
    assert keys.txt_names("example.org", "s1") == ["s1-ed25519._domainkey.example.org",
                                                   "s1._domainkey.example.org"]
    made = keys.generate(tmp_path, "example.org", "s1")
    assert [(k.dns_selector, k.txt_name()) for k in made] == [
        ("s1-ed25519", "s1-ed25519._domainkey.example.org"),
        ("s1", "s1._domainkey.example.org")]
    # The longest selector still makes a DNS label of its Ed25519 name.
    longest = "a" * keys.MAX_SELECTOR
    assert len(keys.dns_selector(longest, "ed25519")) == 63
    with pytest.raises(ValueError):
        keys.txt_name("example.org", "s1", "dsa")
