"""A user's HTTP tool endpoint on loopback: verifies our signature with ``standardwebhooks``.

Each path is one behaviour: ``/good`` answers the arguments back, ``/slow`` holds the
request until the test ends, ``/fail`` answers 500, ``/big`` answers more than any bound,
``/text`` answers something that is not JSON, ``/redirect`` points elsewhere. Every request
is recorded with whether its signature verified.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass(frozen=True)
class Received:
    """One request as the endpoint saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any  # the payload standardwebhooks returned, or None when it refused


class ToolEndpoint:
    """The endpoint; ``url(path)`` gives each behaviour's URL."""

    def __init__(self, secret: str = SECRET) -> None:
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        webhook = Webhook(secret)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verified = webhook.verify(body, headers)
                except WebhookVerificationError:
                    verified = None
                with endpoint._lock:
                    endpoint.received.append(Received(self.path, headers, body, verified))
                if verified is None:
                    self._answer(401, b'{"error":"bad signature"}')
                elif self.path == "/good":
                    self._answer(200, json.dumps({"echo": verified["arguments"]}).encode())
                elif self.path == "/slow":
                    endpoint.release.wait(30)
                    self._answer(200, b"{}")
                elif self.path == "/fail":
                    self._answer(500, b'{"error":"boom"}')
                elif self.path == "/big":
                    self._answer(200, b'{"x":"' + b"a" * 200_000 + b'"}')
                elif self.path == "/text":
                    self._answer(200, b"<html>hello</html>", "text/html")
                elif self.path == "/redirect":
                    self.send_response(307)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._answer(404, b"{}")

            def _answer(self, status: int, payload: bytes, kind: str = "application/json") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the relay gave up on us (timeout, too big): expected

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
