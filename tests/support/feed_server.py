"""A local HTTP server that serves one feed document and honours conditional GET.

`drip_seconds` makes it a slow feed: it answers at once, then sends the body one byte every
`drip_seconds` (no single read ever waits long, only the whole fetch does). `status` makes
it answer that HTTP status instead."""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FeedServer:
    def __init__(self, drip_seconds: float = 0.0, host: str = "127.0.0.1") -> None:
        self.body = b""
        self.requests: list[dict[str, str]] = []
        self.drip_seconds = drip_seconds
        self.status = 200
        self.in_progress = 0  # requests whose answer is still being sent
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(dict(self.headers.items()))
                etag = '"' + hashlib.sha256(server.body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                if server.status != 200:
                    self.send_response(server.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=UTF-8")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                if not server.drip_seconds:
                    self.wfile.write(server.body)
                    return
                with server.lock:
                    server.in_progress += 1
                try:
                    for byte in server.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(server.drip_seconds)
                except OSError:
                    pass  # the client gave up on us: what a slow feed deserves
                finally:
                    with server.lock:
                        server.in_progress -= 1

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        # Polled every 50 ms, not 0.5 s: stop() waits for one poll.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/feed/"

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
