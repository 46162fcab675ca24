"""E-mail over SMTP as a Prefect notification block (``prefect-email`` is not a dependency).

:class:`SmtpNotificationBlock` sends a plain-text e-mail through any SMTP
server with ``smtplib``: STARTTLS (port 587), implicit TLS (port 465) or
none (a local relay), with optional login. Save one in the Prefect UI (or in
code) and name it in an alert route as ``mlops-smtp-email/<name>``; Prefect
automations can use it like any notification block.

Example:
    >>> block = SmtpNotificationBlock(host="smtp.example.com", from_address="mlops@example.com",
    ...                               to_addresses=["oncall@example.com"])
    >>> message = block.message("drift on fraud", "3 of 10 columns drifted")
    >>> message["To"], message["Subject"], message.get_content().strip()
    ('oncall@example.com', 'drift on fraud', '3 of 10 columns drifted')
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import NotificationBlock
from pydantic import Field, SecretStr


class SmtpNotificationBlock(NotificationBlock):
    """Send notifications as e-mail through an SMTP server."""

    _block_type_name = "MLOps SMTP E-mail"
    _block_type_slug = "mlops-smtp-email"
    _description = "Plain-text e-mail through an SMTP server (STARTTLS, TLS or none; optional login)."

    host: str = Field(description="SMTP server host name.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 TLS, 25).")
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="STARTTLS after connecting, TLS from the start, or none."
    )
    username: str | None = Field(default=None, description="Login name, when the server needs one.")
    password: SecretStr | None = Field(default=None, description="Login password.")
    from_address: str = Field(description="Sender address.")
    to_addresses: list[str] = Field(min_length=1, description="Recipient addresses.")
    subject_prefix: str = Field(default="", description="Put before every subject, e.g. '[mlops] '.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for the server.")

    def message(self, subject: str, body: str) -> EmailMessage:
        """The e-mail to send."""
        mail = EmailMessage()
        mail["From"] = self.from_address
        mail["To"] = ", ".join(self.to_addresses)
        mail["Subject"] = f"{self.subject_prefix}{subject}"
        mail.set_content(body)
        return mail

    def _send(self, body: str, subject: str | None) -> None:
        mail = self.message(subject or "MLOps notification", body)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password.get_secret_value() if self.password else "")
            smtp.send_message(mail)

    async def anotify(self, body: str, subject: str | None = None) -> None:
        """Send the e-mail (in a worker thread: ``smtplib`` blocks)."""
        await asyncio.to_thread(self._send, body, subject)

    @async_dispatch(anotify)
    def notify(self, body: str, subject: str | None = None) -> None:  # type: ignore[override]
        """Send the e-mail; SMTP errors propagate (``smtplib.SMTPException``, ``OSError``)."""
        self._send(body, subject)
