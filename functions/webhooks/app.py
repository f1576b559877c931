"""The receiver's HTTP boundary: the FastAPI app, the Lambda handler, and error mapping.

``POST /webhooks/recall`` answers, in this order of checks:

==========================================================  =================================
declared or actual body over 1 MiB                          413, nothing read further
no signing secret configured (or invalid configuration)     503 with a clear message (fail
                                                            closed; Svix retries)
missing/malformed/stale/future/non-matching signature       401, nothing stored
signed, understood                                          200 ``stored`` / ``duplicate``
signed, not understood                                      200 ``stored_unparsed`` (kept raw
                                                            with ``parse_error``)
signed, webhook id stored before with another body          200 ``conflict``, nothing stored
                                                            or applied
DynamoDB unreachable, throttling or refusing                503 / 500 (Recall retries)
==========================================================  =================================

``GET /healthz`` answers 200 ``ok``. Importing this module reads no environment and calls
no AWS API: settings, signing secrets, the DynamoDB client, Logger and Metrics are
resolved once, lazily, on the first request (the cold start), and kept for the process.
``create_app(settings, store)`` takes them ready-made for tests and the local stack.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from functions.webhooks.errors import (
    ConfigError,
    PayloadError,
    PayloadTooLargeError,
    WebhookError,
)
from functions.webhooks.settings import (
    DEFAULT_LOG_LEVEL,
    DEFAULT_METRICS_NAMESPACE,
    DEFAULT_SERVICE_NAME,
    Settings,
    WebhookSecrets,
    load_settings,
)
from functions.webhooks.signatures import verify_webhook
from functions.webhooks.telemetry import Outcome, Telemetry

if TYPE_CHECKING:
    from collections.abc import Callable

    from functions.webhooks.store import WebhookStore

WEBHOOK_PATH: Final = "/webhooks/recall"
HEALTH_PATH: Final = "/healthz"


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request needs, resolved once per process."""

    settings: Settings
    secrets: WebhookSecrets
    store: WebhookStore
    telemetry: Telemetry


class RuntimeResolver:
    """Builds the :class:`Runtime` on first use (thread-safe) and remembers the result.

    A configuration error is remembered too (the environment does not change in a
    process), and answered as 503 on every delivery, with defaults for the telemetry.
    """

    def __init__(self, settings: Settings | None, store: WebhookStore | None) -> None:
        """Use ``settings``/``store`` if given; otherwise read them on first use."""
        self._settings = settings
        self._store = store
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None
        self._error: ConfigError | None = None
        self._fallback: Telemetry | None = None

    def get(self) -> Runtime:
        """The runtime.

        Raises:
            ConfigError: the environment is invalid (the message lists every problem).
        """
        if self._runtime is None and self._error is None:
            with self._lock:
                if self._runtime is None and self._error is None:
                    try:
                        self._runtime = self._build()
                    except ConfigError as exc:
                        self._error = exc
        if self._runtime is None:
            assert self._error is not None
            raise self._error
        return self._runtime

    @property
    def telemetry(self) -> Telemetry:
        """The runtime's telemetry, or a default one when configuration failed."""
        try:
            return self.get().telemetry
        except ConfigError:
            if self._fallback is None:
                self._fallback = Telemetry(
                    DEFAULT_SERVICE_NAME, DEFAULT_METRICS_NAMESPACE, DEFAULT_LOG_LEVEL
                )
            return self._fallback

    def _build(self) -> Runtime:
        from functions.webhooks.store import WebhookStore

        settings = self._settings if self._settings is not None else load_settings()
        store = self._store or WebhookStore(settings.table_name, settings.event_retention_days)
        telemetry = Telemetry(settings.service_name, settings.metrics_namespace, settings.log_level)
        return Runtime(settings, WebhookSecrets(settings), store, telemetry)


def create_app(settings: Settings | None = None, store: WebhookStore | None = None) -> FastAPI:
    """The receiver as an ASGI app; ``settings``/``store`` default to the environment's."""
    resolver = RuntimeResolver(settings, store)
    # A webhook endpoint has no use for interactive docs or a public schema.
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.runtime = resolver

    @app.get(HEALTH_PATH)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.post(WEBHOOK_PATH)
    async def receive_recall_webhook(request: Request) -> JSONResponse:
        return await _receive(request, resolver)

    return app


async def _receive(request: Request, resolver: RuntimeResolver) -> JSONResponse:
    """Verify, parse and store one delivery; map every failure to its answer once."""
    started = time.perf_counter()
    telemetry = resolver.telemetry
    logger = telemetry.logger
    claimed_id = (request.headers.get("webhook-id") or request.headers.get("svix-id") or "")[:256]
    # Request-scoped (contextvar) keys: concurrent requests under uvicorn never mix them.
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(correlation_id=claimed_id or None)
    outcome = Outcome.FAILED
    try:
        answer, outcome, event_name, bot_id, parse_error = await _handle(request, resolver)
    except WebhookError as exc:
        outcome = Outcome(exc.outcome)
        log = logger.error if exc.status_code >= 500 else logger.warning
        log(
            "delivery refused",
            extra={"outcome": outcome.value, "reason": exc.message, "status_code": exc.status_code},
        )
        return JSONResponse(
            {"error": exc.error_code, "message": exc.message}, status_code=exc.status_code
        )
    except Exception:
        logger.exception("delivery failed unexpectedly", extra={"outcome": outcome.value})
        return JSONResponse(
            {"error": "internal_error", "message": "unexpected error; Recall will retry"},
            status_code=500,
        )
    finally:
        telemetry.count(outcome)
    # A reused id with another body is Recall's bug or a replay: worth a look, not a retry.
    accepted = logger.warning if outcome is Outcome.CONFLICT else logger.info
    accepted(
        "delivery accepted",
        extra={
            "outcome": outcome.value,
            "event": event_name,
            "bot_id": bot_id,
            "parse_error": parse_error,  # where the body went wrong, never its content
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return answer


async def _handle(
    request: Request, resolver: RuntimeResolver
) -> tuple[JSONResponse, Outcome, str | None, str | None, str | None]:
    from functions.webhooks.events import BotStatusEvent, RecallEvent, parse_event
    from functions.webhooks.store import DeliveryRecord, Stored

    runtime = resolver.get()
    limit = runtime.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body larger than {limit} bytes")
    # Cached after the first read; only that read (Secrets Manager) may block.
    secrets = runtime.secrets.cached or await run_in_threadpool(runtime.secrets.get)
    body = await _read_body(request, limit)
    verified = verify_webhook(
        request.headers, body, secrets, time.time(), runtime.settings.tolerance_seconds
    )
    received_at = datetime.now(UTC)

    event: RecallEvent | None = None
    parse_error: str | None = None
    try:
        event = parse_event(body, received_at)
    except PayloadError as exc:
        parse_error = exc.message
    record = DeliveryRecord(verified.webhook_id, body, received_at, event, parse_error)
    stored = await run_in_threadpool(runtime.store.record_delivery_once, record)
    if isinstance(event, BotStatusEvent) and stored is not Stored.CONFLICT:
        # Also on an identical duplicate: the first attempt may have stored it but failed here.
        await run_in_threadpool(runtime.store.advance_bot_state, event)

    if stored is Stored.CONFLICT:
        # Signed by Recall, so answered 2xx (a retry would not change it); applied nowhere.
        status, outcome = "conflict", Outcome.CONFLICT
    elif parse_error is not None:
        status, outcome = "stored_unparsed", Outcome.UNPARSEABLE
    elif stored is Stored.NEW:
        status, outcome = "stored", Outcome.STORED
    else:
        status, outcome = "duplicate", Outcome.DUPLICATE
    content: dict[str, Any] = {"status": status, "webhook_id": verified.webhook_id}
    if parse_error is not None:
        content["parse_error"] = parse_error
    event_name = event.name if event is not None else None
    bot_id = event.bot_id if event is not None else None
    return JSONResponse(content), outcome, event_name, bot_id, parse_error


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing to read past ``limit`` bytes whatever Content-Length said."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


app = create_app()


def prime() -> None:
    """Do the cold-start work that needs no environment and no AWS call, ahead of time.

    Imports what the first delivery would import (Mangum, Powertools, boto3, the event
    models and the store) and builds the event models' validators. Lambda SnapStart runs
    it before the snapshot (see :func:`_register_snapstart_priming`), so a restored
    function starts with all of it done; it never creates a client, so no credentials or
    connections end up in the snapshot.
    """
    import boto3.dynamodb.types
    import botocore.config
    import mangum
    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.metrics import Metrics

    from functions.webhooks import store
    from functions.webhooks.events import parse_event

    del boto3, botocore, mangum, Logger, Metrics, store
    primed_at = datetime(2026, 1, 1, tzinfo=UTC)
    for sample in _PRIMING_BODIES:
        parse_event(sample, primed_at)


#: One body per event model, so priming builds every validator.
_PRIMING_BODIES: Final = (
    b'{"event":"bot.done","data":{"data":{"code":"done","sub_code":null,'
    b'"updated_at":"2026-01-01T00:00:00Z"},"bot":{"id":"b","metadata":{}}}}',
    b'{"event":"transcript.data","data":{"data":{"words":[{"text":"hi","start_timestamp":'
    b'{"relative":1.0,"absolute":"2026-01-01T00:00:00Z"}}],"participant":{"id":1}}}}',
    b'{"event":"participant_events.join","data":{"data":{"participant":{"id":1},'
    b'"timestamp":{"absolute":"2026-01-01T00:00:00Z","relative":1.0},"data":null}}}',
)


def _register_snapstart_priming() -> None:
    """Run :func:`prime` before a SnapStart snapshot, where the runtime offers the hook."""
    try:
        from snapshot_restore_py import register_before_snapshot  # type: ignore[import-not-found]
    except ImportError:  # not in Lambda's Python runtime: nothing to register
        return
    register_before_snapshot(prime)


_register_snapstart_priming()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: API Gateway HTTP API (v2) events through Mangum."""
    return _lambda_entry(event, context)


class _LambdaEntry:
    """Mangum around ``app`` with the Powertools Lambda context, built on the first call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handler: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self._handler is None:
            with self._lock:
                if self._handler is None:
                    from mangum import Mangum

                    telemetry: Telemetry = app.state.runtime.telemetry
                    asgi = Mangum(app, lifespan="off")
                    self._handler = telemetry.logger.inject_lambda_context(clear_state=True)(asgi)
                    telemetry.cold_start(context)
        return self._handler(event, context)


_lambda_entry = _LambdaEntry()
