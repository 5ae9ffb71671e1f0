"""common/config.py: defaults, and start-up errors that name the file and the key."""

from pathlib import Path

import pytest

from common import config
from common.config import ConfigError, from_dict, load, parse_duration, parse_listen, parse_size


def error_of(data: dict, source: str = "test.toml") -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(data, source)
    return str(info.value)


def test_defaults_load_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "mailpair.toml"
    path.write_text("")
    cfg = load(path)
    assert cfg.hostname == "localhost"
    assert cfg.domains == []
    assert cfg.paths.spool == Path("/var/spool/mailpair")
    assert cfg.mta.smtp == ["0.0.0.0:25"]
    assert cfg.mta.max_message_size == 36 * 1024 * 1024
    assert cfg.mta.retry_schedule[0] == 10
    assert cfg.log.format == "json"
    assert cfg.lmtp_socket == Path("/run/mailpair/lmtp.sock")
    assert cfg.source == str(path.resolve())


def test_values_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mailpair.toml"
    path.write_text(
        'hostname = "mx.example.org"\n'
        'domains = ["Example.ORG"]\n'
        "[paths]\n"
        'run = "/tmp/run"\n'
        'lmtp_socket = "/tmp/other.sock"\n'
        "[mta]\n"
        'smtp = ["127.0.0.1:2525", "[::1]:2525"]\n'
        'max_message_size = "25M"\n'
        'retry_schedule = [2, "5m"]\n'
    )
    cfg = load(path)
    assert cfg.hostname == "mx.example.org"
    assert cfg.domains == ["example.org"]
    assert cfg.is_local_domain("EXAMPLE.org")
    assert not cfg.is_local_domain("example.net")
    assert cfg.paths.run == Path("/tmp/run")
    assert cfg.lmtp_socket == Path("/tmp/other.sock")
    assert cfg.mta.smtp == ["127.0.0.1:2525", "[::1]:2525"]
    assert cfg.mta.max_message_size == 25 * 1024 * 1024
    assert cfg.mta.retry_schedule == [2, 300]


def test_unknown_key_names_the_file_and_the_dotted_key() -> None:
    msg = error_of({"mta": {"smpt": ["0.0.0.0:25"]}}, "/etc/mailpair/mailpair.toml")
    assert msg.startswith("/etc/mailpair/mailpair.toml: mta.smpt: unknown key")
    assert "smtp" in msg  # the known keys are listed


def test_unknown_top_level_key_and_section() -> None:
    assert "test.toml: hostnam: unknown key" in error_of({"hostnam": "x"})
    assert "test.toml: smtpd: unknown key" in error_of({"smtpd": {}})
    assert "test.toml: imap.port: unknown key" in error_of({"imap": {"port": 143}})


def test_unknown_key_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mailpair.toml"
    path.write_text("[tls]\ncertificate = '/x'\n")
    with pytest.raises(ConfigError, match=r"mailpair\.toml: tls\.certificate: unknown key"):
        load(path)


def test_negative_size() -> None:
    msg = error_of({"mta": {"max_message_size": -1}})
    assert "mta.max_message_size" in msg and "negative" in msg


def test_bad_size_unit() -> None:
    assert "mta.max_message_size" in error_of({"mta": {"max_message_size": "25 parsecs"}})


def test_listeners_must_be_a_list() -> None:
    msg = error_of({"mta": {"smtp": "0.0.0.0:25"}})
    assert "mta.smtp: expected a list" in msg


def test_bad_listen_address() -> None:
    msg = error_of({"mta": {"submission": ["localhost"]}})
    assert "mta.submission" in msg and "host:port" in msg
    assert "out of range" in error_of({"mta": {"smtp": ["127.0.0.1:70000"]}})


def test_bad_listener_item_type() -> None:
    assert "mta.smtp[1]: expected a string" in error_of({"mta": {"smtp": ["0.0.0.0:25", 25]}})


def test_bad_duration() -> None:
    msg = error_of({"mta": {"queue_lifetime": "5 parsecs"}})
    assert "mta.queue_lifetime" in msg and "duration" in msg
    assert "mta.retry_schedule[1]" in error_of({"mta": {"retry_schedule": ["5m", "soon"]}})
    assert "negative" in error_of({"auth": {"failure_delay": -1}})


def test_wrong_type_for_hostname() -> None:
    msg = error_of({"hostname": 5})
    assert "hostname: expected a string" in msg


def test_invalid_values_caught_by_checks() -> None:
    assert "hostname" in error_of({"hostname": "bad name"})
    assert "domains" in error_of({"domains": ["Has Space.org"]})
    assert "domains" in error_of({"domains": ["-leading-dash.org"]})
    assert "log.format" in error_of({"log": {"format": "xml"}})
    assert "mta.retry_schedule" in error_of({"mta": {"retry_schedule": []}})
    assert "mta.max_recipients" in error_of({"mta": {"max_recipients": 0}})
    assert "paths.mail" in error_of({"paths": {"spool": "/x", "mail": "/x"}})


def test_booleans_are_not_numbers() -> None:
    assert "mta.max_recipients" in error_of({"mta": {"max_recipients": True}})
    assert "tls.self_signed" in error_of({"tls": {"self_signed": "yes"}})
    assert "mta.session_timeout" in error_of({"mta": {"session_timeout": True}})


def test_a_section_must_be_a_table() -> None:
    assert "mta: expected a table" in error_of({"mta": ["x"]})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("4h", 14400), ("5d", 432000), ("1w", 604800),
     ("30", 30), ("1.5m", 90), (45, 45), (0.5, 0.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 parsecs", "m", "-5s", "", True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("25M", 25 * 1024**2), ("512K", 512 * 1024), ("1G", 1024**3), ("10", 10),
     (1048576, 1048576), ("25MB", 25 * 1024**2)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["25 parsecs", "1.5M", -1, True, 2.5])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_listen_forms() -> None:
    assert parse_listen("127.0.0.1:25") == ("127.0.0.1", 25)
    assert parse_listen("[::1]:587") == ("::1", 587)
    assert parse_listen(":25") == ("0.0.0.0", 25)
    assert parse_listen("localhost:0") == ("localhost", 0)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("hostname = \n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load(bad)


def test_default_path() -> None:
    assert config.DEFAULT_PATH == "/etc/mailpair/mailpair.toml"


def test_the_sample_configuration_in_deploy_is_valid():
    from pathlib import Path

    from common import config

    sample = Path(__file__).resolve().parents[2] / "deploy" / "mailpair.toml"
    cfg = config.load(sample)
    assert cfg.domains == ["example.org"]
    assert cfg.mta.max_message_size == 36 * 1024 * 1024
    assert cfg.mta.retry_schedule[-1] == 4 * 3600


def test_relay_defaults_and_values() -> None:
    relay = from_dict({}).relay
    assert relay.nameservers == [] and relay.port == 25 and relay.smarthost == ""
    assert relay.delay_warning == 4 * 3600 and relay.tls_for("example.net") == "may"
    relay = from_dict({"relay": {
        "nameservers": ["127.0.0.1:5353", "::1", "[::1]:53"], "port": 2525,
        "tls_policy": {"Example.NET": "verify", "plain.test": "none"},
        "smarthost": "smtp.example.net:587", "smarthost_user": "me@example.org",
        "smarthost_password_file": "/etc/mailpair/smarthost", "delay_warning": 0,
    }}).relay
    assert relay.tls_for("example.net") == "verify" and relay.tls_for("plain.test") == "none"
    assert config.parse_nameserver("[::1]:53") == ("::1", 53)
    assert config.parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert relay.delay_warning == 0


def test_relay_bad_values() -> None:
    assert "relay.nameservers[0]" in error_of({"relay": {"nameservers": ["dns.example"]}})
    assert "relay.tls_policy.x.test" in error_of({"relay": {"tls_policy": {"x.test": "maybe"}}})
    assert "relay.tls_policy: expected a table" in error_of({"relay": {"tls_policy": "verify"}})
    assert "relay.smarthost" in error_of({"relay": {"smarthost": "smtp.example.net"}})
    assert "relay.smarthost_user" in error_of({"relay": {"smarthost_user": "me"}})
    assert "relay.port" in error_of({"relay": {"port": 0}})
    assert "relay.max_connections" in error_of({"relay": {"max_connections": 0}})
    assert "relay.bogus: unknown key" in error_of({"relay": {"bogus": 1}})
