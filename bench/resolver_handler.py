"""The benchmark's yardstick: a bare Powertools APIGatewayHttpResolver doing the receiver's job.

Same checks and the same writes as ``functions.webhooks.app`` (it reuses the receiver's
settings, signature check, event models, store and telemetry), routed by Powertools'
``APIGatewayHttpResolver`` instead of FastAPI + Mangum, and resolved lazily in the same
way (settings, boto3 and the store on the first request). Not shipped: it lives in bench/
only so ``bench/webhooks.py`` can compare cold init and request cost in the same run.

``handler`` is the Lambda entry point. ``asgi_app`` lets uvicorn serve it for the HTTP
throughput comparison: it turns each request into an HTTP API v2 event and calls the
handler one request at a time, since a resolver keeps the current event on itself and is
built for Lambda's one-event-per-instance model.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.webhooks.errors import PayloadError, PayloadTooLargeError, WebhookError
from functions.webhooks.settings import Settings, WebhookSecrets, load_settings
from functions.webhooks.signatures import verify_webhook
from functions.webhooks.telemetry import Outcome, Telemetry

resolver = APIGatewayHttpResolver()
_lock = threading.Lock()
_runtime: dict[str, Any] = {}


def _get_runtime() -> dict[str, Any]:
    with _lock:
        if not _runtime:
            from functions.webhooks.store import WebhookStore

            settings: Settings = load_settings()
            _runtime.update(
                settings=settings,
                secrets=WebhookSecrets(settings),
                store=WebhookStore(settings.table_name, settings.event_retention_days),
                telemetry=Telemetry(
                    settings.service_name, settings.metrics_namespace, settings.log_level
                ),
            )
        return _runtime


def _json(status: int, content: dict[str, Any]) -> Response[str]:
    import json

    return Response(status, "application/json", json.dumps(content))


@resolver.get("/healthz")
def healthz() -> Response[str]:
    return Response(200, "text/plain", "ok")


@resolver.post("/webhooks/recall")
def receive() -> Response[str]:
    from functions.webhooks.events import BotStatusEvent, RecallEvent, parse_event
    from functions.webhooks.store import DeliveryRecord, Stored

    runtime = _get_runtime()
    telemetry: Telemetry = runtime["telemetry"]
    settings: Settings = runtime["settings"]
    event = resolver.current_event
    outcome = Outcome.FAILED
    try:
        raw = event.body or ""
        body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
        if len(body) > settings.max_body_bytes:
            raise PayloadTooLargeError("body too large")
        secrets = runtime["secrets"].get()
        verified = verify_webhook(
            event.headers, body, secrets, time.time(), settings.tolerance_seconds
        )
        parsed: RecallEvent | None = None
        parse_error: str | None = None
        received_at = datetime.now(UTC)
        try:
            parsed = parse_event(body, received_at)
        except PayloadError as exc:
            parse_error = exc.message
        record = DeliveryRecord(verified.webhook_id, body, received_at, parsed, parse_error)
        stored = runtime["store"].record_delivery_once(record)
        if isinstance(parsed, BotStatusEvent) and stored is not Stored.CONFLICT:
            runtime["store"].advance_bot_state(parsed)
        first = stored is Stored.NEW
        outcome = Outcome.STORED if first else Outcome.DUPLICATE
        status = "stored" if first else "duplicate"
        return _json(200, {"status": status, "webhook_id": verified.webhook_id})
    except WebhookError as exc:
        outcome = Outcome(exc.outcome)
        return _json(exc.status_code, {"error": exc.error_code, "message": exc.message})
    finally:
        telemetry.count(outcome)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return resolver.resolve(event, context)


# ASGI bridge for the uvicorn comparison (HTTP API v2 events, one at a time).

_serial = asyncio.Lock()


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serve ``handler`` over HTTP by building the event API Gateway would send."""
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": scope["path"],
        "rawQueryString": scope["query_string"].decode(),
        "headers": headers,
        "requestContext": {
            "http": {"method": scope["method"], "path": scope["path"], "sourceIp": "127.0.0.1"},
            "stage": "$default",
            "requestId": "bench",
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    async with _serial:
        result = await asyncio.to_thread(handler, event, None)
    response_headers = [
        (k.encode(), str(v).encode()) for k, v in (result.get("headers") or {}).items()
    ]
    await send(
        {"type": "http.response.start", "status": result["statusCode"], "headers": response_headers}
    )
    await send({"type": "http.response.body", "body": (result.get("body") or "").encode()})
