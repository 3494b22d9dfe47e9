"""Real Chromium (Debian's, driven by Playwright) against the real app over real HTTP.

No push service is reachable from here, so:
- pushes are delivered with CDP `ServiceWorker.deliverPushMessage` (the real `push` handler
  runs, with plaintext data; encryption is tested on the server side);
- `PushManager.prototype.subscribe` is replaced by an init script that returns a fake
  subscription on an allowed fake push origin, with a real P-256 key and auth secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import expect, sync_playwright

from notifier.web import create_app
from tests.conftest import make_settings
from tests.support.processes import web_server
from tests.support.smtp import free_port
from tests.web.conftest import RecordingQueue

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Notifications stay inside the browser (no D-Bus notification daemon here), where
    # registration.getNotifications() sees them.
    "--disable-features=NativeNotifications,SystemNotifications",
]
FAKE_PUSH_ORIGIN = "http://127.0.0.1:9"  # nothing listens there; pushes go through CDP
TIMEOUT_MS = 20_000  # generous: CI machines also run the Celery end-to-end tests

expect.set_options(timeout=TIMEOUT_MS)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---- the browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install -y chromium dbus)")
    home = tmp_path_factory.mktemp("chromium-home")
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "TMPDIR", "HOME"):
        (home / name.lower()).mkdir()
        env[name] = str(home / name.lower())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, env=env
        )
        yield browser
        browser.close()


@pytest.fixture
def browser(playwright_browser):
    """A fresh context per test (its own service workers, storage and permissions)."""
    context = playwright_browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
    yield context
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


# ---- the news site: another origin, a static folder -------------------------------------


@dataclass
class Site:
    root: Path
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, name: str, text: str) -> str:
        (self.root / name).write_text(text, encoding="utf-8")
        return f"{self.origin}/{name}"


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Site(root, httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


# ---- notifier: the real app over real HTTP ----------------------------------------------


@dataclass
class Notifier:
    url: str

    def lookup(self, endpoint: str) -> requests.Response:
        return requests.post(
            f"{self.url}/api/v1/push/subscriptions/lookup", json={"endpoint": endpoint}, timeout=5
        )

    def subscribed_slugs(self, endpoint: str) -> list[str] | None:
        answer = self.lookup(endpoint)
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        return sorted(c["slug"] for c in answer.json()["categories"])


@pytest.fixture
def notifier(tmp_path, pg_database_url, site) -> Iterator[Notifier]:
    port = free_port()
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        PUSH_ALLOWED_ORIGINS=FAKE_PUSH_ORIGIN,
        CORS_ALLOWED_ORIGINS=site.origin,
    )
    app = create_app(settings, queue=RecordingQueue())
    with web_server(app, port) as url:
        yield Notifier(url)


# ---- faking what needs a real push service ----------------------------------------------


FAKE_PUSH_MANAGER_JS = """
(() => {
  if (!("PushManager" in window)) return;
  const FAKE = __FAKE__;
  const STORED = "fake-push-subscription";
  function make(key) {
    const bytes = Uint8Array.from(atob(key), (c) => c.charCodeAt(0));
    return {
      endpoint: FAKE.endpoint,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: bytes.buffer },
      toJSON() {
        return { endpoint: FAKE.endpoint, expirationTime: null, keys: { ...FAKE.keys } };
      },
      unsubscribe() {
        localStorage.removeItem(STORED);
        localStorage.setItem("fake-push-unsubscribed", String(Date.now()));
        return Promise.resolve(true);
      },
    };
  }
  PushManager.prototype.subscribe = function (options) {
    if (!options || !options.userVisibleOnly || !options.applicationServerKey) {
      return Promise.reject(new DOMException("bad options", "NotSupportedError"));
    }
    const key = new Uint8Array(options.applicationServerKey);
    if (key.length !== 65 || key[0] !== 4) {
      return Promise.reject(new DOMException("bad applicationServerKey", "InvalidAccessError"));
    }
    const stored = btoa(String.fromCharCode(...key));
    localStorage.setItem(STORED, stored);
    return Promise.resolve(make(stored));
  };
  PushManager.prototype.getSubscription = function () {
    const stored = localStorage.getItem(STORED);
    return Promise.resolve(stored ? make(stored) : null);
  };
})();
"""


@dataclass
class FakeSubscription:
    endpoint: str
    p256dh: str
    auth: str

    @classmethod
    def make(cls) -> FakeSubscription:
        point = ec.generate_private_key(ec.SECP256R1()).public_key()
        raw = point.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return cls(
            endpoint=f"{FAKE_PUSH_ORIGIN}/push/{secrets.token_urlsafe(24)}",
            p256dh=b64url(raw),
            auth=b64url(secrets.token_bytes(16)),
        )

    def init_script(self) -> str:
        """Replace PushManager's subscribe/getSubscription; state survives reloads."""
        fake = json.dumps(
            {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}
        )
        return FAKE_PUSH_MANAGER_JS.replace("__FAKE__", fake)


@pytest.fixture
def fake_subscription() -> FakeSubscription:
    return FakeSubscription.make()


# ---- pushes through CDP, and reading what the browser shows ------------------------------


def deliver_push(page, scope_url: str, data: str, timeout: float = TIMEOUT_MS / 1000) -> None:
    """Hand `data` to the `push` handler of the service worker registered for `scope_url`."""
    cdp = page.context.new_cdp_session(page)
    registrations: dict[str, str] = {}

    def updated(event) -> None:
        for registration in event["registrations"]:
            if registration["isDeleted"]:
                registrations.pop(registration["scopeURL"], None)
            else:
                registrations[registration["scopeURL"]] = registration["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + timeout
    while scope_url not in registrations:
        assert time.monotonic() < deadline, f"no service worker for {scope_url}: {registrations}"
        page.wait_for_timeout(50)
    origin = scope_url.split("/", 3)
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": f"{origin[0]}//{origin[2]}",
            "registrationId": registrations[scope_url],
            "data": data,
        },
    )
    cdp.detach()


NOTIFICATIONS_JS = """
async (scope) => {
  const registration = await navigator.serviceWorker.getRegistration(scope);
  if (!registration) return [];
  const shown = await registration.getNotifications();
  return shown.map((n) => ({
    title: n.title, body: n.body, tag: n.tag, icon: n.icon, image: n.image, data: n.data,
    timestamp: n.timestamp, renotify: n.renotify,
    actions: (n.actions || []).map((a) => ({ action: a.action, title: a.title })),
  }));
}
"""


def wait_for_notifications(
    page, scope_url: str, count: int = 1, timeout: float = TIMEOUT_MS / 1000, redeliver=None
):
    """Poll registration.getNotifications(). Under heavy load headless Chromium now and then
    drops a CDP-delivered push on the floor (the handler ran, nothing is listed); `redeliver`
    sends a tagged payload once more halfway, which replaces rather than adds."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        shown = page.evaluate(NOTIFICATIONS_JS, scope_url)
        if len(shown) >= count:
            return shown
        assert time.monotonic() < deadline, f"expected {count} notifications, saw {shown}"
        if redeliver is not None and time.monotonic() > started + timeout / 2:
            redeliver()
            redeliver = None
        page.wait_for_timeout(100)


def register_service_worker(page, script: str, scope: str = "/") -> None:
    """What push.js does on the button press, without the rest of the flow."""
    page.evaluate(
        """async ([script, scope]) => {
          const registration = await navigator.serviceWorker.register(script, { scope });
          const worker = registration.installing || registration.waiting || registration.active;
          if (worker.state !== "activated") {
            await new Promise((resolve) => worker.addEventListener("statechange", () => {
              if (worker.state === "activated") resolve();
            }));
          }
        }""",
        [script, scope],
    )


def set_notification_permission(page, origin: str, setting: str) -> None:
    """Really deny (or grant, or reset to "prompt") notifications, as the reader would."""
    cdp = page.context.new_cdp_session(page)
    context_id = cdp.send("Target.getTargetInfo")["targetInfo"]["browserContextId"]
    cdp.send(
        "Browser.setPermission",
        {
            "permission": {"name": "notifications"},
            "setting": setting,
            "origin": origin,
            "browserContextId": context_id,
        },
    )
    cdp.detach()


# ---- accessibility (axe-core), layout checks and screenshots ------------------------------

PROJECT = Path(__file__).resolve().parents[2]
AXE_JS = PROJECT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = PROJECT / "test-output" / "screenshots"
PHONE, DESKTOP = 390, 1280


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core as bin/test installed it from the npm registry (nothing is fetched here)."""
    if not AXE_JS.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is absent, so axe-core (from the npm registry) is not installed")
        pytest.fail(f"{AXE_JS} is missing: run bin/test, which installs axe-core with npm")
    return AXE_JS.read_text(encoding="utf-8")


@pytest.fixture
def sized_browser(playwright_browser, axe_source, request):
    """A fresh context at the parametrized width (`width`), with axe-core in every page (an
    init script, so the strict CSP of our pages stays as it is) and a list of the requests
    for assets that failed (a missing favicon or style sheet)."""
    width = request.node.callspec.params["width"]
    context = playwright_browser.new_context(viewport={"width": width, "height": 844})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(axe_source)
    errors: list[str] = []
    failed: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
    context.on("response", lambda r: failed.append(f"{r.status} {r.url}")
               if r.status >= 400 and r.request.resource_type != "document" else None)  # fmt: skip
    yield context
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"
    assert failed == [], f"assets that failed to load: {failed}"


def check_page(page, name: str, every_impact: bool = False) -> None:
    """At any width: no serious or critical axe-core violation (`every_impact`: none at all,
    minor and moderate ones too), a screenshot under test-output/; at phone width also no
    sideways scrolling."""
    width = page.viewport_size["width"]
    page.wait_for_load_state("load")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    if width <= PHONE:
        sizes = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert sizes[0] <= sizes[1], f"{name} scrolls sideways at {width} px: {sizes}"
    results = page.evaluate(
        "async () => (await axe.run(document, { iframes: false, resultTypes: ['violations'] }))"
        ".violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }))"
    )
    bad = [v for v in results if every_impact or v["impact"] in ("serious", "critical")]
    assert bad == [], f"{name} at {width} px: {json.dumps(bad, indent=1)}"
