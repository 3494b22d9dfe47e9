"""The development mailbox: messages land in a local Maildir that the web app shows.

Used when SMTP_URL is unset, so a newcomer sees every email without any mail server.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from pathlib import Path

from notifier.messages import EmailEnvelope, Outcome, SendResult


class DevMailboxChannel:
    name = "email"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self) -> DevMailboxSession:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        return DevMailboxSession(mailbox.Maildir(self.directory, create=True))


class DevMailboxSession:
    def __init__(self, box: mailbox.Maildir) -> None:
        self.box = box

    def send(self, message: EmailMessage | EmailEnvelope) -> SendResult:
        # An envelope is stored as the bytes a server would get (with the file's own line
        # ends, as Maildir stores a message object).
        stored = (
            message.data.replace(b"\r\n", b"\n") if isinstance(message, EmailEnvelope) else message
        )
        try:
            key = self.box.add(stored)
        except OSError as error:
            return SendResult(Outcome.RETRY, f"dev mailbox not writable: {error}")
        return SendResult.sent(f"stored in dev mailbox as {key}")

    def send_many(
        self, messages: Iterable[tuple[int, EmailMessage | EmailEnvelope]]
    ) -> Iterator[tuple[int, SendResult]]:
        """One at a time, in order: a local directory gains nothing from more."""
        for key, message in messages:
            yield key, self.send(message)

    def close(self) -> None:
        self.box.close()
