"""The envelope of a queued message: who sent it, and each recipient's state."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
LMTP, SMTP = "lmtp", "smtp"


@dataclass
class Recipient:
    address: str  # where it is delivered, after alias expansion
    original: str  # as the client gave it in RCPT TO
    route: str  # LMTP to the MDA, or SMTP to another domain's MX
    state: str = PENDING
    attempts: int = 0
    last_reply: str = ""
    # The host that gave last_reply, when a server gave it (a DSN's Remote-MTA).
    remote_mta: str = ""


@dataclass
class Envelope:
    id: str
    sender: str
    recipients: list[Recipient]
    created: float
    size: int = 0
    helo: str = ""
    client: str = ""
    auth_user: str | None = None
    # The queue id of the message this one reports on: a DSN or delay warning of ours.
    dsn_for: str = ""
    body_8bit: bool = False
    smtputf8: bool = False
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    held: bool = False  # by the administrator: not tried until released
    delay_warned: bool = False  # the sender was told once that it is late
    # Failed recipients whose DSN is not queued yet (it met a full disk):
    # the message stays until it is, so no bounce is lost.
    unreported: list[str] = field(default_factory=list)

    @property
    def ours_to_sign(self) -> bool:
        """Mail we vouch for with DKIM: from an authenticated user, or our own DSN."""
        return self.auth_user is not None or bool(self.dsn_for)

    def pending(self, route: str | None = None) -> list[Recipient]:
        return [r for r in self.recipients
                if r.state == PENDING and (route is None or r.route == route)]

    @property
    def done(self) -> bool:
        return not self.pending()

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        raw = json.loads(data)
        raw["recipients"] = [Recipient(**r) for r in raw["recipients"]]
        return cls(**raw)


@dataclass
class DeliveryResult:
    """One recipient's answer from the next hop."""

    address: str
    reply: str = field(default="")
