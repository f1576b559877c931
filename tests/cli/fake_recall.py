"""A fake Recall bot API on loopback: records every request, answers from a per-test script."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer."""

    status: int
    body: Any = None  # JSON-serialisable, or str sent as text/html
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival


class FakeRecall:
    """Answers scripted responses in order, then 201 (create) / 200 (anything else)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self.created_ids: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def script(self, *answers: Answer) -> None:
        """Queue answers for the next requests."""
        with self._lock:
            self._script.extend(answers)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(
                Recorded(
                    method=handler.command,
                    path=handler.path,
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
            )
            answer = self._script.popleft() if self._script else None
        if answer is None:
            if handler.command == "POST" and handler.path.endswith("/api/v1/bot/"):
                bot_id = str(uuid.uuid4())
                self.created_ids.append(bot_id)
                answer = Answer(201, {"id": bot_id, **(body or {})})
            else:
                answer = Answer(200, {})
        if isinstance(answer.body, str):
            payload, kind = answer.body.encode(), "text/html"
        else:
            payload, kind = json.dumps(answer.body).encode(), "application/json"
        handler.send_response(answer.status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in answer.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
