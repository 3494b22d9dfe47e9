"""DKIM: every kind of email we send arrives signed, and verifies with dkimpy against the
public key we tell operators to publish; a message changed on the way does not."""

from __future__ import annotations

import re

import dkim
import pytest
from click.testing import CliRunner

from notifier.channels.dkim import DkimSigner, new_private_key
from notifier.channels.registry import email_channel
from notifier.cli import cli
from notifier.config import ConfigError
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.models import Alert
from tests import factories
from tests.conftest import make_settings
from tests.support.queue import article_fanned_out

KEY = new_private_key()
SIGNED_FOR_BULK_RULES = {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
                         "list-unsubscribe-post", "list-id", "feedback-id", "mime-version",
                         "content-type"}  # fmt: skip


def _dns(record: str, name: bytes = b"news1._domainkey.aze.test."):
    """dkimpy's dnsfunc: our TXT record at its name, nothing anywhere else."""
    return lambda asked, timeout=5: record.encode() if asked == name else None


@pytest.fixture
def signing(settings):
    # DKIM is off by default; these tests are about signing, so they turn it on.
    return settings.with_overrides(dkim_domain="aze.test", dkim_selector="news1",
                                   dkim_private_key=KEY)  # fmt: skip


def _verifies(data: bytes) -> bool:
    return dkim.verify(data, dnsfunc=_dns(DkimSigner("aze.test", "news1", KEY).public_record()))


def _signed_names(data: bytes) -> set[str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    h = re.search(r"\bh=([^;]+);", header.replace("\r\n ", " ")).group(1)
    return {name.strip() for name in h.split(":")}


def test_a_reader_s_article_arrives_signed_and_verifies(session, smtp, signing):
    factories.subscriber(session, "reader@example.com", "news")
    story = factories.article(session, "news", title="Manat holds steady")
    session.commit()
    ids = article_fanned_out(session, signing, story.id)[1]
    report = send_deliveries(session, ids, outlets(signing, Composer(signing)), signing)

    assert report.sent == 1
    data = smtp.handler.received[0].data
    assert data.startswith(b"DKIM-Signature:")
    assert _verifies(data)
    assert _signed_names(data) >= SIGNED_FOR_BULK_RULES
    tampered = data.replace(b"Manat holds steady", b"Manat falls sharply", 1)
    assert tampered != data and not _verifies(tampered)
    assert not _verifies(data.replace(b"\r\n\r\n", b"\r\n\r\nInjected line.\r\n", 1))


@pytest.mark.parametrize("kind", ["confirmation", "manage_link", "alert_test_send"])
def test_service_emails_arrive_signed_and_verify(session, smtp, signing, kind):
    reader = factories.subscriber(session, "reader@example.com", "news")
    session.commit()
    composer = Composer(signing)
    rendered = {
        "confirmation": lambda: composer.confirmation_email(session, reader.id, []),
        "manage_link": lambda: composer.manage_link_email(session, reader.id),
        "alert_test_send": lambda: composer.alert_preview(
            Alert(
                title="Roads closed",
                body="Until noon.",
                url="https://aze.media/roads",
                image_url=None,
            ),
            "editor@example.com",
            [],
        ),
    }[kind]()
    # What tasks._send_service_email does: the channel built from the settings, one send.
    connection = email_channel(signing).open()
    try:
        assert connection.send(rendered.to_mime(signing.mail_from)).outcome.value == "sent"
    finally:
        connection.close()

    data = smtp.handler.wait_for(1)[0].data
    assert _verifies(data)
    assert not _verifies(data.replace(b"To: ", b"To: someone-else@example.org, ", 1))


def test_without_dkim_settings_nothing_is_signed(session, smtp, settings):
    connection = email_channel(settings).open()
    try:
        composer = Composer(settings)
        reader = factories.subscriber(session, "reader@example.com", "news")
        session.commit()
        connection.send(composer.manage_link_email(session, reader.id).to_mime(settings.mail_from))
    finally:
        connection.close()
    assert b"DKIM-Signature" not in smtp.handler.wait_for(1)[0].data


def test_dkim_record_prints_the_key_receivers_verify_with(tmp_path, monkeypatch):
    key_file = tmp_path / "dkim.pem"
    env = {"NOTIFIER_DATA_DIR": str(tmp_path / "var"), "DKIM_DOMAIN": "aze.test",
           "DKIM_SELECTOR": "news1"}  # fmt: skip
    result = CliRunner().invoke(cli, ["dkim-record", "--new-key", str(key_file)], env=env)

    assert result.exit_code == 0, result.output
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    line = next(li for li in result.output.splitlines() if "._domainkey." in li)
    assert line.startswith("news1._domainkey.aze.test. IN TXT")
    record = "".join(re.findall(r'"([^"]*)"', line))
    signer = DkimSigner("aze.test", "news1", key_file.read_text())
    message = b"From: a@aze.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
    assert dkim.verify(signer.signed(message), dnsfunc=_dns(record))

    again = CliRunner().invoke(cli, ["dkim-record"], env={**env, "DKIM_PRIVATE_KEY": str(key_file)})
    assert again.exit_code == 0 and line in again.output
    unset = CliRunner().invoke(cli, ["dkim-record"], env={"NOTIFIER_DATA_DIR": env[
        "NOTIFIER_DATA_DIR"]})  # fmt: skip
    assert unset.exit_code == 1 and "Set DKIM_DOMAIN" in unset.output


def _small_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"DKIM_DOMAIN": "aze.test"}, "Set DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY"),
        ({"DKIM_DOMAIN": "not a domain", "DKIM_SELECTOR": "s", "DKIM_PRIVATE_KEY": KEY},
         "DKIM_DOMAIN must be a domain name"),
        ({"DKIM_DOMAIN": "aze.test", "DKIM_SELECTOR": "bad_selector!", "DKIM_PRIVATE_KEY": KEY},
         "DKIM_SELECTOR must be a DNS label"),
        ({"DKIM_DOMAIN": "aze.test", "DKIM_SELECTOR": "s", "DKIM_PRIVATE_KEY": "/nowhere.pem"},
         "neither PEM text nor a readable PEM file"),
        ({"DKIM_DOMAIN": "aze.test", "DKIM_SELECTOR": "s",
          "DKIM_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
         "is not an unencrypted PEM private key"),
        ({"DKIM_DOMAIN": "aze.test", "DKIM_SELECTOR": "s", "DKIM_PRIVATE_KEY": _small_key()},
         "must be an RSA key"),
    ],
)  # fmt: skip
def test_bad_dkim_settings_stop_startup_with_a_sentence(tmp_path, env, sentence):
    with pytest.raises(ConfigError, match=re.escape(sentence)):
        make_settings(tmp_path, **env)


@pytest.mark.parametrize("form", ["pem", "escaped", "file"])
def test_the_key_is_pem_text_or_a_file(tmp_path, form):
    (tmp_path / "k.pem").write_text(KEY)
    value = {"pem": KEY, "escaped": KEY.replace("\n", "\\n"), "file": str(tmp_path / "k.pem")}
    settings = make_settings(tmp_path, DKIM_DOMAIN="Aze.Test.", DKIM_SELECTOR="news1",
                             DKIM_PRIVATE_KEY=value[form])  # fmt: skip
    assert (settings.dkim_domain, settings.dkim_selector) == ("aze.test", "news1")
    assert settings.dkim_private_key.strip() == KEY.strip()


def test_an_international_message_verifies_and_its_address_is_covered():
    """SMTPUTF8 mail (RFC 6532) carries UTF-8 headers; the signature covers them as sent."""
    signer = DkimSigner("aze.test", "news1", KEY)
    message = "From: Aze <news@aze.test>\r\nTo: zoë@例子.广告\r\nSubject: x\r\n\r\nHi.\r\n"
    signed = signer.signed(message.encode())
    assert _verifies(signed)
    assert not _verifies(signed.replace("zoë".encode(), b"zoe"))


def test_the_private_key_stays_out_of_the_settings_repr(tmp_path):
    settings = make_settings(tmp_path, DKIM_DOMAIN="aze.test", DKIM_SELECTOR="news1",
                             DKIM_PRIVATE_KEY=KEY)  # fmt: skip
    assert settings.dkim_private_key.strip() == KEY.strip()
    assert "PRIVATE KEY" not in repr(settings)
