"""The relays' webhooks with email really sent: articles go out through the send path to the
test SMTP server, and the Message-ID each reader's copy carried is what the relay echoes.
Three hard bounces by Mailgun's webhook show on the deliveries and suppress the reader (the
next article is not sent to her, ops lists it with the payload); a complaint through SES
stops all email to the other reader at once and drops every category."""

from __future__ import annotations

import pytest

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.suppressions import SuppressionQuery, list_suppressions
from notifier.models import Delivery, DeliveryOutcome, SubscriberStatus, SuppressionReason
from notifier.web import create_app
from tests import factories
from tests.support.queue import article_fanned_out
from tests.support.sns import TOPIC, SnsStandIn
from tests.web import test_bounce_webhooks_mailgun as mailgun
from tests.web import test_bounce_webhooks_ses as ses


@pytest.fixture
def sns():
    stand_in = SnsStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def relay_settings(settings, smtp):
    # Both webhooks are off by default; the SNS stand-in is on this machine (see
    # test_bounce_webhooks_ses for why SES_SNS_CERT_HOSTS admits 127.0.0.1 here).
    return settings.with_overrides(mailgun_signing_key=mailgun.KEY, ses_sns_topic_arns=(TOPIC,),
                                   ses_sns_cert_hosts=r"127\.0\.0\.1")  # fmt: skip


def send_article(session, settings, smtp, title: str) -> dict[str, str]:
    """Send an article to its readers for real; the Message-ID each of them received."""
    story = factories.article(session, "news", title=title)
    session.commit()
    before = len(smtp.handler.received)
    ids = article_fanned_out(session, settings, story.id)[1]
    send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)
    return {r.rcpt_tos[0]: r.message["Message-ID"] for r in smtp.handler.received[before:]}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_bounces_and_a_complaint_by_webhook_act_on_the_email_we_sent(
    session, smtp, relay_settings, queue, sns
):
    client = create_app(relay_settings, queue).test_client()
    ann = factories.subscriber(session, "ann@example.com", "news")
    bob = factories.subscriber(session, "bob@example.com", "news", "economy")
    for number in range(relay_settings.email_bounce_limit):
        received = send_article(session, relay_settings, smtp, f"Story {number}")
        event = mailgun.failed(ann.email, received[ann.email], event_id=f"mg-{number}")
        assert mailgun.post(client, mailgun.signed(event)).json == {"processed": 1, "replays": 0}
        session.expire_all()
        delivery = session.query(Delivery).filter_by(subscriber_id=ann.id).order_by(
            Delivery.id.desc()).first()  # fmt: skip
        assert delivery.outcome == DeliveryOutcome.BOUNCED
        assert "5.1.1" in delivery.last_error
        last = number == relay_settings.email_bounce_limit - 1
        assert session.get(type(ann), ann.id).status == (
            SubscriberStatus.BOUNCED if last else SubscriberStatus.ACTIVE)  # fmt: skip

    received = send_article(session, relay_settings, smtp, "Not for Ann")
    assert list(received) == [bob.email]
    [listed] = list_suppressions(session, SuppressionQuery(search="ann@"))
    assert (
        listed.source == "mailgun" and f"{relay_settings.email_bounce_limit} hard" in listed.detail
    )
    assert '"mg-2"' in listed.report.raw  # the payload, kept as the evidence

    complaint = ses.notification(ses.complaint(bob.email, received[bob.email]))
    assert ses.post(client, sns.signed(complaint, "2")).json == {"processed": 1, "replays": 0}
    session.expire_all()
    bob = session.get(type(bob), bob.id)
    assert bob.status == SubscriberStatus.COMPLAINED and bob.categories == []
    [listed] = list_suppressions(session, SuppressionQuery(search="bob@"))
    assert (listed.reason, listed.source) == (SuppressionReason.COMPLAINT, "ses")
    assert send_article(session, relay_settings, smtp, "For nobody") == {}
