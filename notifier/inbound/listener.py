"""`notifier bounces`: an SMTP (or LMTP) server the MX or the local MTA hands returned mail to.

It accepts mail only for BOUNCE_DOMAIN (anything else: 550, so it is never an open relay)
and no larger than BOUNCE_MAX_BYTES, and answers 250 only once the report is processed and
committed. When the database cannot be reached, or a report cannot be processed, it answers
451: the sending MTA keeps the message and tries again, so nothing returned to us is lost,
and the failure is kept with its cause (notifier.inbound.unprocessed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import InterfaceError, OperationalError

from notifier.config import Settings
from notifier.inbound.processing import BounceProcessor
from notifier.inbound.unprocessed import UnprocessedReports
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


class BounceHandler:
    """aiosmtpd handler: recipients in BOUNCE_DOMAIN only; each message to the processor."""

    def __init__(self, processor: BounceProcessor, domain: str) -> None:
        self.processor = processor
        self.domain = domain.lower()
        self.unprocessed = UnprocessedReports(processor.settings.database_url)

    def _unprocessed(self, error: BaseException, raw: bytes, recipients: tuple[str, ...],
                     cause: str) -> None:  # fmt: skip
        self.unprocessed.add(error, raw, len(recipients), cause, utcnow())

    async def handle_RCPT(self, server, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        if address.rpartition("@")[2].lower() != self.domain:
            return f"550 5.7.1 only mail for {self.domain} is taken here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        recipients = tuple(envelope.rcpt_tos)
        loop = asyncio.get_running_loop()
        try:
            processed = await loop.run_in_executor(
                None, self.processor.process, raw, "listener", recipients
            )
        except (OperationalError, InterfaceError) as error:  # the database is away
            await loop.run_in_executor(None, self._unprocessed, error, raw, recipients, "database")
            return "451 4.3.0 cannot store the report now, try again later"
        except Exception as error:  # a report we cannot read: recorded and shown, not hidden
            await loop.run_in_executor(None, self._unprocessed, error, raw, recipients, "error")
            return "451 4.3.0 the report could not be processed, try again later"
        if self.unprocessed.waiting:  # the database is back: what failed while away is kept
            await loop.run_in_executor(None, self.unprocessed.write_waiting)
        log.info("bounce report %s: %s (delivery %s)%s", processed.report_id, processed.kind,
                 processed.delivery_id, " replay" if processed.replay else "")  # fmt: skip
        return "250 OK report taken"


class _Controller(Controller):
    def __init__(self, handler: BounceHandler, lmtp: bool, **kwargs) -> None:
        self.lmtp = lmtp
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        server_class = LMTP if self.lmtp else SMTP
        return server_class(self.handler, **self.SMTP_kwargs)


def bounce_listener(settings: Settings, sessions: Callable, lmtp: bool = False) -> Controller:
    """The listener on BOUNCE_LISTEN, not yet started (`.start()`, `.stop()`)."""
    if not settings.bounce_domain:
        raise ValueError("BOUNCE_DOMAIN is not set: there is no bounce address to listen for.")
    host, _, port = settings.bounce_listen.rpartition(":")
    handler = BounceHandler(BounceProcessor(settings, sessions), settings.bounce_domain)
    return _Controller(
        handler, lmtp, hostname=host.strip("[]"), port=int(port),
        data_size_limit=settings.bounce_max_bytes, server_hostname=settings.bounce_domain,
    )  # fmt: skip
