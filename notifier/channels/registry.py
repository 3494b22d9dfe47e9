"""The transports, built from the settings: a small table, keyed by each channel's own name.

A new transport is a module in this package and one factory in TRANSPORTS; what a delivery
on it is made of, and what its outcomes mean for the readers, is registered on the delivery
side (notifier.delivery.outlets).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from notifier.channels.base import Channel
from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.channels.dkim import DkimSigner
from notifier.channels.pacing import Pacer, pacer_for
from notifier.channels.push_backoff import SharedBackoff
from notifier.channels.push_endpoints import EndpointPolicy
from notifier.channels.smtp import SmtpChannel
from notifier.channels.webpush import WebPushChannel
from notifier.config import Settings
from notifier.vapid import VapidSigner, load_private_key


@cache
def pacer(settings: Settings) -> Pacer:
    """One per process: the send-rate limits every channel of this process honours."""
    return pacer_for(settings)


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer the settings ask for (DKIM_DOMAIN and the rest), or None."""
    if not settings.dkim_domain:
        return None
    return DkimSigner(settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key)


def email_channel(settings: Settings) -> SmtpChannel | DevMailboxChannel:
    if settings.smtp_url:
        return SmtpChannel(settings.smtp_url, settings.smtp_timeout_seconds,
                           settings.smtp_connections, pacer(settings),
                           settings.smtp_keepalive_seconds, dkim_signer(settings),
                           settings.smtp_lookahead)  # fmt: skip
    return DevMailboxChannel(settings.dev_mailbox_dir)


@cache
def vapid_signer(settings: Settings) -> VapidSigner:
    """One per process, so a JWT signed for a push service serves every batch that hour."""
    vapid = load_private_key(settings.vapid_private_key, settings.vapid_public_key)
    return VapidSigner(vapid, settings.vapid_subject)


def push_channel(settings: Settings) -> WebPushChannel:
    return WebPushChannel(
        vapid_signer(settings),
        EndpointPolicy(settings.push_allowed_origins),
        settings.push_connect_timeout_seconds,
        settings.push_read_timeout_seconds,
        SharedBackoff(settings.database_url, settings.push_backoff_refresh_seconds),
        pacer=pacer(settings),
        concurrency_per_origin=settings.push_concurrency_per_origin,
        retry_after_max_seconds=settings.retry_after_max_seconds,
        keepalive_seconds=settings.push_keepalive_seconds,
        warm_seconds=settings.push_warm_seconds,
        slow_start_requests=settings.push_slow_start_requests,
        throttle_hold_seconds=settings.push_throttle_hold_seconds,
        endpoint_check_seconds=settings.push_endpoint_check_seconds,
    )


TRANSPORTS: tuple[Callable[[Settings], Channel], ...] = (email_channel, push_channel)


def transports(settings: Settings) -> dict[str, Channel]:
    """Every transport, by the name it gives itself (Channel.name)."""
    built: dict[str, Channel] = {}
    for make in TRANSPORTS:
        channel = make(settings)
        if channel.name in built:
            raise ValueError(f"two transports call themselves {channel.name!r}")
        built[channel.name] = channel
    return built
