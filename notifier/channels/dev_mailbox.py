"""The development mailbox: messages land in a local Maildir that the web app shows.

Used when SMTP_URL is unset, so a newcomer sees every email without any mail server.
"""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

from notifier.channels.base import Outcome, SendResult


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

    def send(self, message: EmailMessage) -> SendResult:
        try:
            key = self.box.add(message)
        except OSError as error:
            return SendResult(Outcome.RETRY, f"dev mailbox not writable: {error}")
        return SendResult.sent(f"stored in dev mailbox as {key}")

    def close(self) -> None:
        self.box.close()
