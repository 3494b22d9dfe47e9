"""Every reader's email carries an envelope sender that names its delivery (VERP), and the
headers the 2024 bulk-sender rules ask for."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.models import Delivery
from notifier.tokens import BounceAddresses, TokenError
from tests import factories
from tests.conftest import make_settings
from tests.support.queue import article_fanned_out


def _send_article(session, settings, *readers):
    for reader in readers:
        factories.subscriber(session, reader, "news")
    story = factories.article(session, "news", title="Manat holds steady")
    session.commit()
    ids = article_fanned_out(session, settings, story.id)[1]
    send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)
    return story


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_each_email_is_returned_to_an_address_that_names_its_delivery(
    session, smtp, settings, tmp_path
):
    # BOUNCE_DOMAIN is empty by default (no bounce mailbox): this deployment has one.
    settings = settings.with_overrides(bounce_domain="bounces.aze.test")
    story = _send_article(session, settings, "ann@example.com", "bob@example.com")

    addresses = BounceAddresses("bounces.aze.test", settings.secret_key)
    deliveries = {d.id: d for d in session.scalars(select(Delivery))}
    seen = {}
    for received in smtp.handler.received:
        local, _, domain = received.mail_from.partition("@")
        assert domain == "bounces.aze.test" and local.startswith("bounces+")
        assert len(local) <= 64 and local == local.lower()
        delivery = deliveries[addresses.delivery_id(received.mail_from)]
        seen[delivery.subscriber_id] = received.rcpt_tos
        message = received.message
        assert message["Message-ID"].endswith(f".d{delivery.id}@aze.test>")
        assert message["From"].addresses[0].addr_spec == "news@aze.test"  # what readers see
        assert message["List-Id"] == "Aze.Media <news.127.0.0.1>"
        assert message["Feedback-ID"] == f"article{story.id}:article:127.0.0.1:notifier"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sorted(r for rcpts in seen.values() for r in rcpts) == [
        "ann@example.com",
        "bob@example.com",
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_address_the_fast_layout_cannot_carry_gets_its_own_bounce_address(
    session, smtp, settings
):
    # As above: a deployment with a bounce mailbox.
    settings = settings.with_overrides(bounce_domain="bounces.aze.test")
    _send_article(session, settings, '"ann smith"@example.com')
    [received] = smtp.handler.wait_for(1)
    delivery = session.scalar(select(Delivery))
    addresses = BounceAddresses("bounces.aze.test", settings.secret_key)
    assert addresses.delivery_id(received.mail_from) == delivery.id
    assert received.rcpt_tos == ['"ann smith"@example.com']
    assert received.message["Message-ID"].endswith(f".d{delivery.id}@aze.test>")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_without_a_bounce_domain_the_envelope_sender_is_mail_from(session, smtp, settings):
    _send_article(session, settings, "ann@example.com")
    [received] = smtp.handler.wait_for(1)
    assert received.mail_from == "news@aze.test"


def test_a_bounce_address_survives_case_folding_and_refuses_forgeries(tmp_path):
    settings = make_settings(tmp_path, BOUNCE_DOMAIN="Bounces.Aze.Test")
    addresses = BounceAddresses(settings.bounce_domain, settings.secret_key)
    address = addresses.address(123456789)
    assert addresses.delivery_id(address.upper()) == 123456789
    assert addresses.delivery_id(f"<{address}>") == 123456789
    number, _signature = address.split("+")[1].split("@")[0].split(".")
    forged = address.replace(f"+{number}.", f"+{int(number, 36) + 1:x}.")
    for wrong in (
        forged,
        address.replace("aze.test", "evil.test"),
        f"bounces+{number}@bounces.aze.test",
        "news@aze.test",
        "bounces+zz!.x@bounces.aze.test",
    ):
        with pytest.raises(TokenError):
            addresses.delivery_id(wrong)
    other_key = BounceAddresses("bounces.aze.test", "another-key")
    with pytest.raises(TokenError):
        other_key.delivery_id(address)
    rolled = BounceAddresses("bounces.aze.test", "new-key", fallback_keys=(settings.secret_key,))
    assert rolled.delivery_id(address) == 123456789  # mail sent before a key roll-over


@pytest.mark.parametrize("value", ["bounces example com", "-bad.example.com", "x@y.com"])
def test_a_malformed_bounce_domain_is_refused_with_its_name(tmp_path, value):
    from notifier.config import ConfigError

    with pytest.raises(ConfigError, match="BOUNCE_DOMAIN"):
        make_settings(tmp_path, BOUNCE_DOMAIN=value)
