"""The one TOML configuration file both daemons read.

Every key is declared here with its type and default, so an unknown key or a
bad value stops start-up with the file, the dotted key and what is wrong,
instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

DEFAULT_PATH = "/etc/mailpair/mailpair.toml"


class ConfigError(Exception):
    """A configuration problem, already phrased for the administrator."""


class Duration(float):
    """Seconds; written in the file as 30, "30s", "5m", "4h" or "5d"."""


class Size(int):
    """Bytes; written as 1048576, "512K", "25M" or "1G"."""


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(value: Any) -> Duration:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 4h or 5d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return Duration(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value.lower())
        if m:
            return Duration(float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"])
    raise ValueError(f"expected a duration such as 30s, 5m, 4h or 5d, got {value!r}")


def parse_size(value: Any) -> Size:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 25M")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return Size(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?\s*", value.lower())
        if m:
            return Size(int(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise ValueError(f"expected a size such as 1048576, 512K or 25M, got {value!r}")


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:25', '[::1]:587' or ':25' (all IPv4 addresses) -> (host, port)."""
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})", value.strip())
    if not m:
        raise ValueError(f"expected host:port such as 127.0.0.1:25 or [::]:25, got {value!r}")
    host = m.group(1) if m.group(1) is not None else (m.group(2) or "0.0.0.0")
    port = int(m.group(3))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


@dataclass(frozen=True)
class PathsConfig:
    spool: Path = Path("/var/spool/mailpair")
    # A user's Maildir is <mail>/<domain>/<local part>/Maildir.
    mail: Path = Path("/var/vmail")
    run: Path = Path("/run/mailpair")
    users: Path = Path("/etc/mailpair/users")
    aliases: Path = Path("/etc/mailpair/aliases")
    # Empty means <run>/lmtp.sock; set it to hand mail to another LMTP server.
    lmtp_socket: str = ""


@dataclass(frozen=True)
class TLSConfig:
    cert: Path = Path("/etc/mailpair/tls/cert.pem")
    key: Path = Path("/etc/mailpair/tls/key.pem")
    # Development only: make a self-signed pair at start-up when the files are missing.
    self_signed: bool = False


@dataclass(frozen=True)
class LogConfig:
    format: str = "json"
    level: str = "info"

    def check(self) -> None:
        if self.format not in ("json", "console"):
            raise ConfigError(f"format: expected 'json' or 'console', got {self.format!r}")
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"level: expected debug, info, warning or error, got {self.level!r}"
            )


@dataclass(frozen=True)
class AuthConfig:
    # The lookup (mtad) and auth (mdad) processes run as this user, the only
    # one besides root that may read the users and aliases files.
    user: str = "mailpair-auth"
    group: str = "mailpair-auth"
    # How long a successful password check is remembered, so a client that
    # logs in often does not pay for argon2 every time. 0 switches it off.
    cache_ttl: Duration = Duration(60)
    # A wrong password is answered after this delay, doubled for each further
    # failure from the same client address or for the same account, up to
    # failure_delay_max (Dovecot's auth penalty: 2 s doubling to 15 s).
    failure_delay: Duration = Duration(2)
    failure_delay_max: Duration = Duration(15)
    # A client address or account with no failure for this long starts afresh.
    failure_forget: Duration = Duration(3600)
    # Wrong passwords on one connection before it is closed.
    failures_per_connection: int = 3
    # Threads hashing passwords at once; one client address gets at most half.
    hash_threads: int = 4

    def check(self) -> None:
        if self.failure_delay_max < self.failure_delay:
            raise ConfigError("failure_delay_max: must not be less than failure_delay")
        for name in ("failures_per_connection", "hash_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")


@dataclass(frozen=True)
class MTAConfig:
    smtp: list[str] = field(default_factory=lambda: ["0.0.0.0:25"])
    submission: list[str] = field(default_factory=lambda: ["0.0.0.0:587"])
    # Implicit TLS submission (RFC 8314); an empty list switches it off.
    submissions: list[str] = field(default_factory=lambda: ["0.0.0.0:465"])
    # smtp runs as user/group; the spool belongs to the queue's user, and the
    # relay, which carries mail out and into the MDA's LMTP socket, has its own.
    user: str = "mailpair"
    group: str = "mailpair"
    queue_user: str = "mailpair-queue"
    queue_group: str = "mailpair-queue"
    relay_user: str = "mailpair-relay"
    relay_group: str = "mailpair-relay"
    max_message_size: Size = Size(36 * 1024 * 1024)
    max_recipients: int = 1000
    # Seconds between delivery attempts; the last step repeats until expiry.
    retry_schedule: list[Duration] = field(
        default_factory=lambda: [
            Duration(x) for x in (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400)
        ]
    )
    queue_lifetime: Duration = Duration(5 * 86400)
    delivery_concurrency: int = 20
    session_timeout: Duration = Duration(300)
    # Submission: the MAIL FROM a login may use besides itself and the aliases
    # that reach it (Postfix reject_sender_login_mismatch): login -> a list of
    # addresses, "@domain" for any address there, or "*" for any at all.
    send_as: dict[str, list[str]] = field(default_factory=dict)
    # DKIM keys: <dkim_keys>/<domain>/<selector>.{rsa,ed25519}.key, root:<relay_group>.
    dkim_keys: Path = Path("/etc/mailpair/dkim")
    # The selector `mta-ctl dkim keygen` uses without --selector; empty: mp<year><month>,
    # so a later key gets a new name and the old record can stay published meanwhile.
    dkim_selector: str = ""
    # The server's public addresses, for the A/AAAA, SPF and PTR records that
    # `mta-ctl dns` prints and checks; empty: not printed (pass --address).
    public_addresses: list[str] = field(default_factory=list)

    def check(self) -> None:
        for i, item in enumerate(self.public_addresses):
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ConfigError(f"public_addresses[{i}]: {item!r} is not an IP address") from None
        if self.dkim_selector and not re.fullmatch(
                r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", self.dkim_selector):
            raise ConfigError(f"dkim_selector: {self.dkim_selector!r} is not one DNS label")
        for name in ("smtp", "submission", "submissions"):
            for item in getattr(self, name):
                try:
                    parse_listen(item)
                except ValueError as e:
                    raise ConfigError(f"{name}: {e}") from None
        if not self.retry_schedule:
            raise ConfigError("retry_schedule: needs at least one interval")
        for name in ("max_recipients", "delivery_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")


@dataclass(frozen=True)
class MDAConfig:
    user: str = "vmail"
    group: str = "vmail"
    # The IMAP and POP3 login processes speak everything before authentication
    # as this user, who has no access to any mail (Dovecot's dovenull).
    login_user: str = "mailpair-login"
    login_group: str = "mailpair-login"
    # The socket's group, the only one (besides its owner) that may hand mail
    # over on LMTP: the MTA's relay, and not its smtp process.
    lmtp_group: str = "mailpair-relay"
    # Maildir++ folders every new mailbox gets, with their SPECIAL-USE flag.
    folders: list[str] = field(
        default_factory=lambda: ["Sent", "Drafts", "Trash", "Junk", "Archive"]
    )


@dataclass(frozen=True)
class IMAPConfig:
    imap: list[str] = field(default_factory=lambda: ["0.0.0.0:143"])  # STARTTLS
    imaps: list[str] = field(default_factory=lambda: ["0.0.0.0:993"])  # implicit TLS
    # Passwords only over TLS, except from a loopback client when this is on
    # (development and benchmarks, as Dovecot treats loopback as secured).
    plaintext_on_loopback: bool = False
    # RFC 3501: an idle client may be logged out after 30 minutes at least.
    idle_timeout: Duration = Duration(1800)

    def check(self) -> None:
        _check_listeners(self, ("imap", "imaps"))


@dataclass(frozen=True)
class POP3Config:
    pop3: list[str] = field(default_factory=lambda: ["0.0.0.0:110"])  # STLS
    pop3s: list[str] = field(default_factory=lambda: ["0.0.0.0:995"])  # implicit TLS
    plaintext_on_loopback: bool = False
    idle_timeout: Duration = Duration(600)  # RFC 1939: at least 10 minutes

    def check(self) -> None:
        _check_listeners(self, ("pop3", "pop3s"))


@dataclass(frozen=True)
class AutoconfigConfig:
    # HTTPS for mail clients' autoconfig/autodiscover and the MTA-STS policy, served by
    # mtad's autoconfig process; an empty list switches it off.
    listen: list[str] = field(default_factory=lambda: ["0.0.0.0:443"])
    # That process runs as this user, with no access to mail, spool or the users file.
    user: str = "mailpair-web"
    group: str = "mailpair-web"

    def check(self) -> None:
        _check_listeners(self, ("listen",))


@dataclass(frozen=True)
class LimitsConfig:
    """What keeps one client from starving the others, for every listener.

    The smtp, imap and pop3 processes each count their own connections.
    """

    # Connections open at once to one process, from all clients together.
    connections: int = 1000
    # From one client address (Postfix smtpd_client_connection_count_limit).
    connections_per_client: int = 50
    # IMAP and POP3, after login: one user from one address at once
    # (Dovecot mail_max_userip_connections).
    user_connections_per_client: int = 10
    # The connection limits above do not count loopback clients (development).
    exempt_loopback: bool = False
    # From connecting to a successful login (IMAP, POP3, submission's AUTH),
    # whatever the client sends meanwhile (Dovecot: 3 minutes).
    login_timeout: Duration = Duration(180)
    # SMTP commands that move no mail (NOOP, RSET, VRFY, HELP, ...) in one
    # session before it is closed (Postfix smtpd_junk_command_limit).
    junk_commands: int = 100
    # One message's header section, all fields together, and its number of
    # fields: beyond either the message is refused (552).
    header_size: Size = Size(256 * 1024)
    header_fields: int = 1000
    # Received and Delivered-To fields a message may carry before it is
    # refused as looping (Postfix hopcount_limit).
    hop_count: int = 50
    # IMAP store work (searches, fetches, flag changes) of one user running at
    # once in a process, so one user's searches do not stall everyone else.
    store_threads_per_user: int = 2

    def check(self) -> None:
        for name in ("connections", "connections_per_client", "user_connections_per_client",
                     "junk_commands", "header_fields", "hop_count",
                     "store_threads_per_user"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")
        if self.header_size < 1024:
            raise ConfigError("header_size: must be at least 1K")


def _check_listeners(section: object, names: tuple[str, ...]) -> None:
    for name in names:
        for item in getattr(section, name):
            try:
                parse_listen(item)
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None


TLS_POLICIES = ("verify", "may", "none")


def parse_nameserver(value: str) -> tuple[str, int]:
    """'192.0.2.53', '127.0.0.1:5353', '::1' or '[::1]:53' -> (address, port)."""
    v = value.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?", v)
    if m:
        host, port = m.group(1), m.group(2)
    elif v.count(":") == 1:
        host, _, port = v.partition(":")
    else:
        host, port = v, None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IP address with an optional :port, got {value!r}") from None
    number = int(port) if port else 53
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host, number


@dataclass(frozen=True)
class RelayConfig:
    """Outbound SMTP: how mail for other domains leaves (the relay process)."""

    # DNS servers as "address" or "address:port"; empty: /etc/resolv.conf's.
    nameservers: list[str] = field(default_factory=list)
    dns_timeout: Duration = Duration(10)
    # The port of other domains' MX hosts: 25 (a test points it elsewhere).
    port: int = 25
    # The name said in EHLO; empty: hostname.
    helo: str = ""
    connect_timeout: Duration = Duration(30)
    # RFC 5321 4.5.3.2: at least 5 minutes per command, 10 after the data.
    command_timeout: Duration = Duration(300)
    data_timeout: Duration = Duration(600)
    # "host:port": all outbound mail through this one host, no MX lookups
    # (e.g. a provider's submission port 587 when port 25 is blocked).
    smarthost: str = ""
    # AUTH PLAIN/LOGIN at the smarthost, only over TLS; the file holds the
    # password and must be readable by mta.user.
    smarthost_user: str = ""
    smarthost_password_file: str = ""
    # Per destination domain: "verify" (a verified certificate or no
    # delivery), "may" (STARTTLS when offered: the default) or "none".
    tls_policy: dict[str, str] = field(default_factory=dict)
    # CA certificates for "verify"; empty: the system's.
    tls_ca_file: str = ""
    max_connections: int = 20
    max_connections_per_domain: int = 4
    # Tell the sender once when a message has waited this long (0: never).
    delay_warning: Duration = Duration(4 * 3600)

    def check(self) -> None:
        for i, item in enumerate(self.nameservers):
            try:
                parse_nameserver(item)
            except ValueError as e:
                raise ConfigError(f"nameservers[{i}]: {e}") from None
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: {self.port} is out of range")
        if self.smarthost:
            try:
                host, port = parse_listen(self.smarthost)
            except ValueError as e:
                raise ConfigError(f"smarthost: {e}") from None
            if not self.smarthost.strip().startswith(("[", host)) or port == 0:
                raise ConfigError(f"smarthost: expected host:port, got {self.smarthost!r}")
        if bool(self.smarthost_user) != bool(self.smarthost_password_file):
            raise ConfigError("smarthost_user: needs smarthost_password_file, and the reverse")
        if self.smarthost_user and not self.smarthost:
            raise ConfigError("smarthost_user: set smarthost too")
        for domain, policy in self.tls_policy.items():
            if policy not in TLS_POLICIES:
                raise ConfigError(f"tls_policy.{domain}: expected verify, may or none, "
                                  f"got {policy!r}")
        for name in ("max_connections", "max_connections_per_domain"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")

    def tls_for(self, domain: str) -> str:
        policies = {d.lower(): p for d, p in self.tls_policy.items()}
        return policies.get(domain.lower(), "may")


@dataclass(frozen=True)
class Config:
    hostname: str = "localhost"
    domains: list[str] = field(default_factory=list)
    paths: PathsConfig = field(default_factory=PathsConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    log: LogConfig = field(default_factory=LogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    mta: MTAConfig = field(default_factory=MTAConfig)
    mda: MDAConfig = field(default_factory=MDAConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    pop3: POP3Config = field(default_factory=POP3Config)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    autoconfig: AutoconfigConfig = field(default_factory=AutoconfigConfig)
    # Where the file was read from, for messages and for children to re-read.
    source: str = ""

    def check(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", self.hostname):
            raise ConfigError(f"hostname: {self.hostname!r} is not a valid host name")
        for d in self.domains:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", d):
                raise ConfigError(
                    f"domains: {d!r} is not a valid domain name"
                )

    @property
    def lmtp_socket(self) -> Path:
        return Path(self.paths.lmtp_socket) if self.paths.lmtp_socket else (
            self.paths.run / "lmtp.sock"
        )

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower() in self.domains


_CONVERTERS = {Duration: parse_duration, Size: parse_size}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", Path: "a path"}


def _convert(tp: Any, value: Any, key: str) -> Any:
    if tp in _CONVERTERS:
        try:
            return _CONVERTERS[tp](value)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    if get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        _, inner = get_args(tp)
        return {k: _convert(inner, v, f"{key}.{k}") for k, v in value.items()}
    if get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner,) = get_args(tp)
        return [_convert(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table [{key}], got {value!r}")
        return _build(tp, value, key + ".")
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{key}: expected {_TYPE_NAMES.get(tp, tp.__name__)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    for key in data:
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{prefix}{key}: unknown key (known here: {known})")
    kwargs = {k: _convert(hints[k], v, prefix + k) for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None
    return obj


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        cfg = _build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    cfg = dataclasses.replace(cfg, domains=[d.lower() for d in cfg.domains], source=source)
    if cfg.paths.spool == cfg.paths.mail:
        raise ConfigError(f"{source}: paths.mail: must differ from paths.spool")
    return cfg


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return from_dict(data, str(path.resolve()))
