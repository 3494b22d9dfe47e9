"""A feed can only lead the poller to public addresses: every redirect hop is checked, on
the addresses actually connected to, and a redirect loop ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from notifier.polling.fetch import FeedFetchError, FeedRequest, fetch
from tests.conftest import make_settings
from tests.support.rss import Item, rss

FEED = rss(Item("https://aze.media/?p=1", "Story", None))


class Site:
    """One HTTP server; `routes` maps a path to (status, Location or None)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str | None]] = {}
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                status, location = site.routes.get(self.path, (200, None))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0" if location else str(len(FEED)))
                self.end_headers()
                if not location:
                    self.wfile.write(FEED)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, DATABASE_URL="sqlite://")


def _fetch(settings, url: str):
    return fetch(FeedRequest(url, None, None), settings)


def test_redirects_on_the_feeds_own_host_are_followed(site, settings):
    site.routes["/feed"] = (301, "/feed/")
    fetched = _fetch(settings, f"http://127.0.0.1:{site.port}/feed")
    assert fetched is not None and fetched.body == FEED and site.hits == ["/feed", "/feed/"]


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/secret",  # a name for the loopback address
        "http://2130706433:{port}/secret",  # 127.0.0.1 written as a number
        "http://[::1]:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/secret",
    ],
)
def test_a_redirect_to_a_private_address_is_refused(site, settings, target):
    site.routes["/feed"] = (302, target.format(port=site.port))
    with pytest.raises(FeedFetchError, match=r"not a public address|not a canonical"):
        _fetch(settings, f"http://127.0.0.1:{site.port}/feed")
    assert site.hits == ["/feed"], "nothing was fetched from the private address"


def test_a_network_the_operator_allows_may_be_redirected_to(site, tmp_path):
    # The one setting this test changes is the one under test.
    allowing = make_settings(
        tmp_path, DATABASE_URL="sqlite://", FEED_ALLOWED_NETWORKS="127.0.0.0/8,::1/128"
    )
    site.routes["/feed"] = (302, f"http://localhost:{site.port}/mirror")
    assert _fetch(allowing, f"http://127.0.0.1:{site.port}/feed") is not None


@pytest.mark.parametrize("target", ["ftp://aze.media/feed", "file:///etc/passwd", ""])
def test_a_redirect_to_anything_but_http_is_refused(site, settings, target):
    site.routes["/feed"] = (302, target)
    with pytest.raises(FeedFetchError, match="not an http"):
        _fetch(settings, f"http://127.0.0.1:{site.port}/feed")


def test_a_redirect_loop_ends(site, settings):
    site.routes["/a"] = (302, "/b")
    site.routes["/b"] = (302, "/a")
    with pytest.raises(FeedFetchError, match="redirects more than FEED_MAX_REDIRECTS"):
        _fetch(settings, f"http://127.0.0.1:{site.port}/a")
    assert len(site.hits) == settings.feed_max_redirects + 1
