"""The bounce mailbox over IMAP (imaplib): just the commands the reader needs, each checked.

Messages are read with BODY.PEEK, so reading never sets \\Seen. What the reader took is moved
with MOVE (RFC 6851) when the server has it, else copied, flagged \\Deleted and removed with
UID EXPUNGE (RFC 4315) of exactly those UIDs; a server with neither keeps the flagged copy
for its owner to expunge. A plain EXPUNGE, which would remove anybody's \\Deleted mail, is
never sent.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from notifier.config import Settings

_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The IMAP server refused or broke off a command; the message says which and why."""


@dataclass(frozen=True)
class Listed:
    uid: int
    flags: frozenset[str]
    size: int


def quoted(name: str) -> str:
    """An IMAP quoted string (folder names may hold spaces)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: list[int]) -> str:
    return ",".join(str(uid) for uid in uids)


class Mailbox:
    """One logged-in IMAP connection with a folder selected read-write."""

    def __init__(self, imap: imaplib.IMAP4) -> None:
        self.imap = imap
        self.capabilities: frozenset[str] = frozenset()

    def _ok(self, what: str, result: tuple[str, list]) -> list:
        status, data = result
        if status != "OK":
            said = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise MailboxError(f"IMAP {what} answered {status}: {said}")
        return data

    def refresh_capabilities(self) -> None:
        """After login a server may offer more (MOVE, UIDPLUS) than in its greeting."""
        data = self._ok("CAPABILITY", self.imap.capability())
        words = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace")
        self.capabilities = frozenset(word.upper() for word in words.split())

    def ensure_folder(self, name: str) -> None:
        """Create the folder when LIST does not show it."""
        listed = self._ok("LIST", self.imap.list('""', quoted(name)))
        if not any(item for item in listed if item):
            self._ok(f"CREATE {name}", self.imap.create(quoted(name)))

    def select(self, name: str) -> None:
        self._ok(f"SELECT {name}", self.imap.select(quoted(name)))

    def undeleted_uids(self) -> list[int]:
        data = self._ok("UID SEARCH", self.imap.uid("SEARCH", "UNDELETED"))
        return sorted(int(uid) for uid in b" ".join(d for d in data if d).split())

    def listing(self, uids: list[int]) -> list[Listed]:
        """UID, flags and size of each (a message expunged meanwhile is simply absent)."""
        data = self._ok("UID FETCH", self.imap.uid("FETCH", uid_set(uids),
                                                   "(UID FLAGS RFC822.SIZE)"))  # fmt: skip
        listed = []
        for item in data:
            line = (item[0] if isinstance(item, tuple) else item) or b""
            uid, flags, size = _UID.search(line), _FLAGS.search(line), _SIZE.search(line)
            if uid and flags and size:
                names = frozenset(flags.group(1).decode("ascii", "replace").split())
                listed.append(Listed(int(uid.group(1)), names, int(size.group(1))))
        return listed

    def peek(self, uids: list[int]) -> dict[int, bytes]:
        """The whole messages, without setting \\Seen."""
        data = self._ok("UID FETCH", self.imap.uid("FETCH", uid_set(uids), "(UID BODY.PEEK[])"))
        bodies = {}
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                found = _UID.search(item[0])
                if found:
                    bodies[int(found.group(1))] = item[1]
        return bodies

    def move(self, uids: list[int], folder: str) -> str:
        """Move exactly these messages; how it was done (move, expunged, flagged)."""
        if not uids:
            return "none"
        if "MOVE" in self.capabilities:
            self._ok("UID MOVE", self.imap.uid("MOVE", uid_set(uids), quoted(folder)))
            return "move"
        self._ok("UID COPY", self.imap.uid("COPY", uid_set(uids), quoted(folder)))
        self._ok("UID STORE", self.imap.uid("STORE", uid_set(uids), "+FLAGS.SILENT",
                                            "(\\Deleted)"))  # fmt: skip
        if "UIDPLUS" in self.capabilities:
            self._ok("UID EXPUNGE", self.imap.uid("EXPUNGE", uid_set(uids)))
            return "expunged"
        return "flagged"


def _connect(settings: Settings) -> imaplib.IMAP4:
    host, port = settings.imap_host, settings.imap_port
    timeout = settings.imap_timeout_seconds
    if settings.imap_security == "plain":
        return imaplib.IMAP4(host, port, timeout=timeout)
    context = ssl.create_default_context(cafile=settings.imap_ca_file or None)
    if settings.imap_security == "ssl":
        return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
    imap = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        imap.starttls(ssl_context=context)
    except BaseException:
        imap.shutdown()
        raise
    return imap


@contextmanager
def open_mailbox(settings: Settings) -> Iterator[Mailbox]:
    """Log in to IMAP_HOST, make sure IMAP_PROCESSED_FOLDER exists, select IMAP_FOLDER.
    Connection, TLS and protocol trouble all come out as MailboxError."""
    try:
        imap = _connect(settings)
    except (OSError, imaplib.IMAP4.error) as error:
        where = f"{settings.imap_host}:{settings.imap_port} ({settings.imap_security})"
        raise MailboxError(f"cannot reach the bounce mailbox at {where}: {error}") from error
    mailbox = Mailbox(imap)
    try:
        try:
            mailbox._ok("LOGIN", imap.login(settings.imap_user, settings.imap_password))
        except imaplib.IMAP4.error as error:
            raise MailboxError(f"IMAP login as {settings.imap_user} refused: {error}") from error
        mailbox.refresh_capabilities()
        mailbox.ensure_folder(settings.imap_processed_folder)
        mailbox.select(settings.imap_folder)
        yield mailbox
    except (OSError, imaplib.IMAP4.error) as error:
        raise MailboxError(f"the bounce mailbox broke off: {error}") from error
    finally:
        with suppress(OSError, imaplib.IMAP4.error):  # the connection is gone either way
            imap.logout()
