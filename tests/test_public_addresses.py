"""The resolver feed fetches and web pushes connect through refuses non-public addresses."""

from __future__ import annotations

import asyncio
import ipaddress
from concurrent.futures import ThreadPoolExecutor

import pytest

from notifier.public_addresses import NotPublicAddress, PublicOnlyResolver, is_public


def run(make_coroutine):
    """asyncio.run in a thread of its own: the browser tests keep Playwright's event loop
    running in the test thread for the whole session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


@pytest.mark.parametrize(
    ("address", "public"),
    [("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
     ("169.254.169.254", False), ("::1", False), ("::ffff:127.0.0.1", False),
     ("fe80::1%eth0", False), ("100.64.0.1", False)],
)  # fmt: skip
def test_public_means_globally_routable(address, public):
    assert is_public(address) is public


def test_names_resolving_to_private_addresses_are_refused_unless_trusted():
    async def resolve(host, **options):
        resolver = PublicOnlyResolver(**options)  # aiohttp's resolvers need a running loop
        try:
            return await resolver.resolve(host, 80)
        finally:
            await resolver.close()

    with pytest.raises(NotPublicAddress, match="localhost resolves to"):
        run(lambda: resolve("localhost"))
    assert run(lambda: resolve("localhost", trusted_hosts=["LOCALHOST"]))
    loopback = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert run(lambda: resolve("localhost", allowed_networks=loopback))


def test_web_push_connects_through_the_checking_resolver():
    from notifier.channels import webpush

    async def pool_resolver():
        key = webpush._PoolKey(2, webpush.KEEPALIVE_SECONDS, webpush.WARM_SECONDS,
                               webpush.SLOW_START_REQUESTS)  # fmt: skip
        pool = webpush._Pool(key)
        try:
            return type(pool.http.resolver)
        finally:
            pool.http.close()
            pool.pacing.shutdown()

    assert run(pool_resolver) is PublicOnlyResolver
