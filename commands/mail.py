"""Outgoing mail (SMTP): the one-time registration codes.

The deployment's SMTP settings reach the core as a :class:`MailConfig` in the core's
``config["mail"]`` (built from ``SMTP_*`` in bot/settings.py); with none, nothing is
mailed and registration falls back to staff approval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from commands.errors import CourseBotError
from commands.timefmt import plain

log = logging.getLogger("coursebot.mail")

TlsMode = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class MailConfig:
    host: str
    sender: str
    port: int = 587
    #: none: plain SMTP (a relay on localhost); starttls: upgrade on the submission port
    #: (587); tls: TLS from the first byte (465).
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0

    def __repr__(self) -> str:  # never print the password
        return (
            f"MailConfig(host={self.host!r}, port={self.port}, tls={self.tls!r}, "
            f"sender={self.sender!r}, username={self.username!r})"
        )


class MailError(CourseBotError):
    """The mail server refused or could not be reached; nothing was stored."""

    kind = "mail"


async def send_mail(config: MailConfig, to: str, subject: str, body: str) -> None:
    """Send one plain-text mail, or raise :class:`MailError` with a message for the user."""
    import aiosmtplib

    msg = EmailMessage()
    msg["From"] = config.sender
    msg["To"] = to
    # A mail shows instants in the course's zone (no chat time markers).
    msg["Subject"] = plain(subject)
    msg.set_content(plain(body))
    try:
        await aiosmtplib.send(
            msg,
            hostname=config.host,
            port=config.port,
            username=config.username or None,
            password=config.password or None,
            use_tls=config.tls == "tls",
            start_tls=config.tls == "starttls",
            timeout=config.timeout,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        log.warning("mail to %s via %s:%s failed: %s", to, config.host, config.port, exc)
        raise MailError(
            "The mail with your code could not be sent just now, so nothing was changed.",
            hint="Try again in a few minutes; if it keeps failing, tell your instructor.",
        ) from None
