"""Email over SMTP: one connection reused for a batch, every reply mapped to an outcome."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from notifier.channels.base import Outcome, SendResult

TRANSIENT_ERRORS = (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"SMTP {code} {' '.join(text.split())}"


def _result_for_code(code: int, message: bytes | str) -> SendResult:
    outcome = Outcome.GONE if 500 <= code < 600 else Outcome.RETRY
    return SendResult(outcome, _reply(code, message))


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
        if self.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
        if self.username:
            client.login(self.username, self.password or "")
        return client


class SmtpSession:
    """Connects lazily, reconnects once after a drop, and stops trying after a refusal."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel
        self.client: smtplib.SMTP | None = None
        self.unreachable: str | None = None

    def send(self, message: EmailMessage) -> SendResult:
        if self.unreachable:
            return SendResult(Outcome.RETRY, self.unreachable)
        for attempt in (1, 2):
            try:
                if self.client is None:
                    self.client = self.channel.connect()
                refused = self.client.send_message(message)
            except smtplib.SMTPRecipientsRefused as error:
                code, reply = next(iter(error.recipients.values()))
                return _result_for_code(code, reply)
            except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as error:
                return _result_for_code(error.smtp_code, error.smtp_error)
            except smtplib.SMTPResponseException as error:
                self._drop()
                if error.smtp_code == 421 or attempt == 2:
                    return _result_for_code(error.smtp_code, error.smtp_error)
            except smtplib.SMTPServerDisconnected as error:
                self._drop()
                if attempt == 2:
                    return SendResult(Outcome.RETRY, f"SMTP disconnected: {error}")
            except TRANSIENT_ERRORS as error:
                self._drop()
                self.unreachable = f"SMTP server unreachable: {error}"
                return SendResult(Outcome.RETRY, self.unreachable)
            else:
                if refused:
                    code, reply = next(iter(refused.values()))
                    return _result_for_code(code, reply)
                return SendResult.sent()
        return SendResult(Outcome.RETRY, "SMTP send failed twice")  # pragma: no cover

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
