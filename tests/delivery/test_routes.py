"""Each channel is one route and one transport of the same name; the registry reads the name
from the transport itself."""

from __future__ import annotations

import pytest

from notifier.channels import registry
from notifier.channels.registry import transports
from notifier.delivery.compose import Composer
from notifier.delivery.outlets import outlets
from notifier.delivery.routes import CHANNELS, ROUTES, in_queue_order


def test_every_route_has_the_transport_that_calls_itself_by_its_name(settings):
    built = transports(settings)
    assert {name: channel.name for name, channel in built.items()} == {n: n for n in built}
    bound = outlets(settings, Composer(settings))
    assert set(bound) == set(ROUTES) == set(CHANNELS)
    assert all(bound[name].channel is not None for name in CHANNELS)


def test_a_route_without_a_transport_is_refused_with_its_name(settings, monkeypatch):
    # A registry that lost the push transport: the app must not start half-wired.
    monkeypatch.setattr(registry, "TRANSPORTS", (registry.email_channel,))
    with pytest.raises(ValueError, match="no transport calls itself 'push'"):
        outlets(settings, Composer(settings))


def test_the_fastest_channel_is_queued_first():
    assert in_queue_order(["email", "push"]) == ["push", "email"]
    assert in_queue_order(["email"]) == ["email"]
