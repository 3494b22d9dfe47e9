"""Email over SMTP: one connection reused for a batch, every reply mapped to an outcome.

Only a refusal of the recipient address (5xx at RCPT) means the reader is gone. A server
that refuses us as a whole (greeting, EHLO, login, sender) is a temporary problem for every
message, retried until the operator fixes it or the attempts run out.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from notifier.channels.base import Outcome, SendResult


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"SMTP {code} {' '.join(text.split())}"


class SmtpChannel:
    """SMTP_URL: smtp://[user:pass@]host:port, smtps://… (TLS), smtp+starttls://…"""

    name = "email"

    def __init__(self, smtp_url: str, timeout_seconds: float) -> None:
        parts = urlsplit(smtp_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout_seconds

    def open(self) -> SmtpSession:
        return SmtpSession(self)

    def connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.scheme == "smtp+starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
        except BaseException:
            client.close()
            raise
        return client


class SmtpSession:
    """Connects lazily, reconnects once after a drop, and stops trying after a refusal."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel
        self.client: smtplib.SMTP | None = None
        self.unavailable: str | None = None

    def send(self, message: EmailMessage) -> SendResult:
        for attempt in (1, 2):
            if self.unavailable:
                return SendResult(Outcome.RETRY, self.unavailable)
            if self.client is None and not self._connect():
                continue
            try:
                refused = self.client.send_message(message)
            except smtplib.SMTPRecipientsRefused as error:
                code, reply = next(iter(error.recipients.values()))
                outcome = Outcome.GONE if 500 <= code < 600 else Outcome.RETRY
                return SendResult(outcome, _reply(code, reply))
            except smtplib.SMTPResponseException as error:
                if error.smtp_code == 421:  # the server is closing this connection
                    self._drop()
                    if attempt == 1:
                        continue
                if isinstance(error, smtplib.SMTPDataError) and error.smtp_code >= 500:
                    return SendResult(Outcome.FAILED, _reply(error.smtp_code, error.smtp_error))
                return SendResult(Outcome.RETRY, _reply(error.smtp_code, error.smtp_error))
            except OSError as error:  # includes SMTPServerDisconnected and timeouts
                self._drop()
                if attempt == 2:
                    return SendResult(Outcome.RETRY, f"SMTP connection lost: {error}")
            else:
                if refused:
                    code, reply = next(iter(refused.values()))
                    return SendResult(Outcome.GONE, _reply(code, reply))
                return SendResult.sent()
        return SendResult(Outcome.RETRY, self.unavailable or "SMTP send failed twice")

    def _connect(self) -> bool:
        try:
            self.client = self.channel.connect()
        except smtplib.SMTPResponseException as error:
            reply = _reply(error.smtp_code, error.smtp_error)
            self.unavailable = f"SMTP server refused us: {reply}"
        except OSError as error:
            self.unavailable = f"SMTP server unreachable: {error}"
        return self.client is not None

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the messages are already accepted; a failed QUIT changes nothing
            finally:
                self.client = None
