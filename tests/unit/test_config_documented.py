"""Every key of the configuration schema (common/config.py) is in deploy/mailpair.toml,
with its default, and in the README's table; neither names a key the schema lacks."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from common import config

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "mailpair.toml"
README = ROOT / "README.md"
# Set on purpose in the sample: an installed server is not "localhost" with no domains.
SAMPLE_SETS = {"hostname", "domains"}
NOT_A_KEY = {"source"}  # where the file was read from


def sections() -> set[str]:
    return {f.name for f in dataclasses.fields(config.Config)
            if dataclasses.is_dataclass(getattr(config.Config(), f.name))}


def schema_keys() -> set[str]:
    keys = set()
    for f in dataclasses.fields(config.Config):
        if f.name in sections():
            keys |= {f"{f.name}.{g.name}"
                     for g in dataclasses.fields(getattr(config.Config(), f.name))}
        elif f.name not in NOT_A_KEY:
            keys.add(f.name)
    return keys


def toml_keys(data: dict) -> set[str]:
    keys = set()
    for name, value in data.items():
        if name in sections() and isinstance(value, dict):
            keys |= {f"{name}.{k}" for k in value}
        else:
            keys.add(name)
    return keys


def differences(found: set[str], where: str) -> list[str]:
    want = schema_keys()
    return ([f"{k}: in the schema, missing from {where}" for k in sorted(want - found)]
            + [f"{k}: in {where}, not in the schema" for k in sorted(found - want)])


def test_the_sample_configuration_has_every_key() -> None:
    found = toml_keys(tomllib.loads(SAMPLE.read_text()))
    assert differences(found, "deploy/mailpair.toml") == []


def test_the_sample_configuration_loads_with_the_defaults() -> None:
    sample = config.load(SAMPLE)
    default = config.Config()
    wrong = []
    for key in sorted(schema_keys() - SAMPLE_SETS):
        section, _, name = key.rpartition(".")
        have = getattr(getattr(sample, section), name) if section else getattr(sample, name)
        want = getattr(getattr(default, section), name) if section else getattr(default, name)
        if have != want:
            wrong.append(f"{key}: {have!r} in deploy/mailpair.toml, default {want!r}")
    assert wrong == []
    assert sample.hostname == "mail.example.org" and sample.domains == ["example.org"]


def readme_table_keys(text: str) -> set[str]:
    """The first column of the table under '## Configuration': `a.b`, `c` means a.b, a.c."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        prefix = ""
        for name in re.findall(r"`([^`]+)`", cell):
            if "." in name:
                prefix = name.rpartition(".")[0] + "."
                keys.add(name)
            else:
                keys.add(prefix + name)
    return keys


def test_the_readme_table_has_every_key() -> None:
    assert differences(readme_table_keys(README.read_text()), "README's table") == []


def test_the_checks_see_a_missing_key() -> None:
    """The comparisons above would name a key that one side lacks."""
    text = SAMPLE.read_text()
    assert "\n[imap]\n" in text
    found = toml_keys(tomllib.loads(text.replace('imaps = ["0.0.0.0:993"]', "")))
    assert "imap.imaps: in the schema, missing from x" in differences(found, "x")
    found = readme_table_keys("\n## Configuration\n| `imap.imap`, `bogus` | |\n")
    assert "imap.bogus: in x, not in the schema" in differences(found, "x")
