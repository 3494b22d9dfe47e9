"""The fault harness itself: our own Redis restarts empty, the proxy really cuts connections."""

from __future__ import annotations

import smtplib
import socket

import pytest
import redis

from tests.fault.harness import FaultySmtp


def test_own_redis_flushes_and_restarts_empty_on_the_same_port(own_redis):
    with own_redis.client() as client:
        client.set("key", "value")
        own_redis.flushall()
        assert client.get("key") is None
        client.set("key", "value")
    port = own_redis.port
    own_redis.restart()
    assert own_redis.port == port
    with own_redis.client() as client:
        assert client.get("key") is None
    own_redis.stop()
    with own_redis.client() as client, pytest.raises(redis.ConnectionError):
        client.ping()


def test_tcp_proxy_cuts_live_connections_and_refuses_new_ones(tcp_proxy, slow_smtp):
    proxy = tcp_proxy(("127.0.0.1", slow_smtp.port))
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=5) as client:
        assert client.noop()[0] == 250
        proxy.stop()
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            client.noop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", proxy.port)):
        pass
    proxy.start()
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=5) as client:
        assert client.noop()[0] == 250


def test_faulty_smtp_answers_421_then_recovers_and_counts_by_to_header(slow_smtp: FaultySmtp):
    handler = slow_smtp.handler
    message = "From: a@example.com\r\nTo: Reader <r@example.com>\r\nSubject: s\r\n\r\nbody\r\n"
    handler.closing = True
    with smtplib.SMTP("127.0.0.1", slow_smtp.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["r@example.com"], message)
        assert refused.value.smtp_code == 421
    handler.closing = False
    with smtplib.SMTP("127.0.0.1", slow_smtp.port, timeout=5) as client:
        client.sendmail("a@example.com", ["r@example.com"], message)
    assert handler.by_recipient() == {"r@example.com": 1}
