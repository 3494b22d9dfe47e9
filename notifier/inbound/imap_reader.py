"""The bounce mailbox reader: returned mail that waits in an IMAP folder, handed one message
at a time to the same processor as the listener (source "imap").

A bounce mailbox is often shared with people (the MAIL_FROM mailbox when BOUNCE_DOMAIN is
unset), so the reader only takes what it recognised as ours: a delivery report, complaint or
auto-reply that was addressed to BOUNCE_DOMAIN (Delivered-To, X-Original-To, To, ...) or that
names one of our deliveries. Only those are moved to IMAP_PROCESSED_FOLDER; everything else
is left exactly as it was (read with BODY.PEEK: not even \\Seen) and no record of it is kept.
A message whose processing fails stays where it is, is recorded as a task failure (task
"imap") and is read again at the next poll. One poll reads the mailbox at a time, whatever
host it runs on (notifier.exclusive): a poll that starts while another reads leaves it to
that one, rather than process the same reports again and fail on the ones it recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from functools import partial

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.domain.bounces import Processed
from notifier.exclusive import alone
from notifier.inbound.mailbox import Mailbox, open_mailbox
from notifier.inbound.processing import BounceProcessor
from notifier.inbound.unprocessed import UnprocessedReports
from notifier.models import BounceKind
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)
SOURCE = "imap"
TASK_NAME = "notifier.bounces.imap"  # its failures show as task "imap"
MAILBOX_LOCK = "bounce mailbox"  # one poll at a time (notifier.exclusive)
# Where a mailbox shows the envelope recipient (added by the delivering MTA), then the headers.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


@dataclass
class MailboxPoll:
    """What one poll did, message by message (by UID in IMAP_FOLDER)."""

    taken: dict[int, Processed] = field(default_factory=dict)  # ours: processed, then moved
    left: dict[int, str] = field(default_factory=dict)  # not ours: why it was left alone
    failed: dict[int, str] = field(default_factory=dict)  # ours or not, processing failed
    moved_by: str = "none"  # move, expunged (COPY + UID EXPUNGE) or flagged (\\Deleted only)
    busy: bool = False  # another poll was reading the mailbox: this one left it to that one


def addressed_to_domain(raw: bytes, domain: str) -> tuple[str, ...]:
    """The addresses in BOUNCE_DOMAIN this message was delivered or written to."""
    if not domain:
        return ()
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    values = [str(value) for name in RECIPIENT_HEADERS for value in headers.get_all(name, [])]
    found = [address for _, address in getaddresses(values)]
    return tuple(dict.fromkeys(a for a in found if a.rpartition("@")[2].lower() == domain))


def is_ours(processed: Processed, addressed: tuple[str, ...]) -> bool:
    """A report (not mail a person wrote) that came to our bounce address or names our
    delivery. A reader's reply to the bounce address stays for a person to read."""
    if processed.kind == BounceKind.UNRELATED:
        return False
    return bool(addressed) or processed.delivery_id is not None


def read_bounce_mailbox(settings: Settings, sessions: Callable[[], Session]) -> MailboxPoll:
    """One poll: up to IMAP_BATCH_SIZE messages of ours processed and moved, oldest first.
    Raises MailboxError when the server cannot be reached or refuses a command."""
    processor = BounceProcessor(settings, sessions)
    unprocessed = UnprocessedReports(settings.database_url, SOURCE, TASK_NAME)
    poll = MailboxPoll()
    with alone(settings.database_url, MAILBOX_LOCK) as only_poll:
        if not only_poll:
            log.info("bounce mailbox: another poll is reading it; this one leaves it to that one")
            poll.busy = True
            return poll
        _read(settings, processor, unprocessed, poll)
    if poll.taken or poll.failed:
        log.info("bounce mailbox: %s taken, %s failed, %s left alone", len(poll.taken),
                 len(poll.failed), len(poll.left))  # fmt: skip
    return poll


def _read(
    settings: Settings, processor: BounceProcessor, unprocessed: UnprocessedReports,
    poll: MailboxPoll,
) -> None:  # fmt: skip
    batch = settings.imap_batch_size
    with open_mailbox(settings) as mailbox:
        uids = mailbox.undeleted_uids()
        for start in range(0, len(uids), batch):
            ours, database_away = _read_chunk(mailbox, uids[start : start + batch], processor,
                                              unprocessed, poll)  # fmt: skip
            if ours:
                poll.moved_by = mailbox.move(ours, settings.imap_processed_folder)
            if database_away or len(poll.taken) + len(poll.failed) >= batch:
                break


def _read_chunk(
    mailbox: Mailbox, uids: list[int], processor: BounceProcessor,
    unprocessed: UnprocessedReports, poll: MailboxPoll,
) -> tuple[list[int], bool]:  # fmt: skip
    """Process one FETCH worth; the UIDs to move, and whether the database went away."""
    settings = processor.settings
    listed = mailbox.listing(uids)
    small = [item.uid for item in listed if item.size <= settings.bounce_max_bytes]
    for item in listed:
        if item.size > settings.bounce_max_bytes:
            poll.left[item.uid] = f"larger than BOUNCE_MAX_BYTES ({item.size} bytes)"
            log.warning("bounce mailbox: UID %s left alone, %s bytes is over BOUNCE_MAX_BYTES",
                        item.uid, item.size)  # fmt: skip
    bodies = mailbox.peek(small) if small else {}
    ours: list[int] = []
    for uid in small:
        if len(poll.taken) + len(poll.failed) >= settings.imap_batch_size:
            break
        raw = bodies.get(uid)
        if raw is None:
            continue  # expunged by someone else meanwhile
        addressed = addressed_to_domain(raw, settings.bounce_domain)
        try:
            processed = processor.process_if(raw, SOURCE, addressed,
                                             partial(is_ours, addressed=addressed))  # fmt: skip
        except (OperationalError, InterfaceError) as error:  # the database is away
            unprocessed.add(error, raw, len(addressed), "database", utcnow())
            poll.failed[uid] = f"database: {error}"
            return ours, True
        except Exception as error:  # a report we cannot read: recorded and shown, left in place
            unprocessed.add(error, raw, len(addressed), "error", utcnow())
            poll.failed[uid] = f"{type(error).__name__}: {error}"
            continue
        if processed is None:
            poll.left[uid] = "not ours"
            continue
        poll.taken[uid] = processed
        ours.append(uid)
        log.info("bounce report %s from the mailbox: %s (delivery %s)%s", processed.report_id,
                 processed.kind.value, processed.delivery_id,
                 " replay" if processed.replay else "")  # fmt: skip
    return ours, False
