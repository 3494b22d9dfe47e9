"""Pick the transport for each channel from the settings."""

from __future__ import annotations

from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.channels.smtp import SmtpChannel
from notifier.config import Settings


def email_channel(settings: Settings) -> SmtpChannel | DevMailboxChannel:
    if settings.smtp_url:
        return SmtpChannel(settings.smtp_url, settings.smtp_timeout_seconds)
    return DevMailboxChannel(settings.dev_mailbox_dir)
