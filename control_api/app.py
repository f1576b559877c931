"""The control API's HTTP boundary: routes, the error handlers, the Lambda handler.

==================================  =====================================================
route                               answer
==================================  =====================================================
``POST /v1/bots``                   201 the new bot (``voicebot bot create --json``);
                                    ``Idempotency-Key`` replays the first answer
``GET /v1/bots?limit=&days=``       200 recent bots, newest first (``voicebot bots``)
``GET /v1/bots/{id}``               200 state, timeline, connections, turns (``bot show``)
``POST /v1/bots/{id}/leave``        202 the bot is leaving (``voicebot bot leave``)
``GET /v1/bots/{id}/transcript``    200 the turns (``voicebot transcript``)
``GET /v1/bots/{id}/notes``         200 what the agent noted
``GET /v1/bots/{id}/minutes``       200 the minutes (``voicebot bot minutes``); 404 before
``GET /v1/openapi.json``            the OpenAPI document (also docs/control-api.openapi.json)
==================================  =====================================================

Errors are ``{"error": code, "message": ...}``: 400 malformed input (bad JSON, wrong
types, unknown fields, bad ids; what is wrong, never the value), 404 unknown bot, 409 a
create with this key in progress, 413 a body over 16 KiB, 415 not JSON, 422 an
idempotency key reused with another body, 502 Recall refused or failed, 503 a secret not
filled in or the table unreachable (``control_api.errors``). Authentication is API
Gateway's (IAM/SigV4, before the function runs); the caller's IAM principal scopes its
idempotency keys. The operations themselves are ``control_api.bot_creation`` and
``control_api.bot_actions``; what they share, ``control_api.runtime``.

Importing this module reads no environment and calls no AWS API.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from control_api import bot_actions, bot_creation
from control_api.errors import ERRORS, ApiError, describe, problem
from control_api.models import (
    BotList,
    BotView,
    CreateBot,
    CreatedBot,
    Leaving,
    MinutesView,
    Notes,
    Transcript,
)
from control_api.runtime import Runtime, RuntimeResolver, aws_call, bot_records, default_runtime
from storage import schema
from storage.requests import MAX_IDEMPOTENCY_KEY_CHARS

logger = logging.getLogger("control_api")

API_PREFIX: Final = "/v1"
MAX_BODY_BYTES: Final = 16 * 1024

BotId = Annotated[str, Path(min_length=1, max_length=schema.MAX_ID_BYTES)]


def create_app(runtime: Callable[[], Runtime] = default_runtime) -> FastAPI:
    """The control API as an ASGI app; ``runtime`` builds its dependencies on first use."""
    resolver = RuntimeResolver(runtime)
    app = FastAPI(
        title="Recall voice agent control API",
        version="1",
        description=(
            "Create, dismiss and inspect meeting bots. Every route needs an AWS SigV4 "
            "signature (service execute-api) from a principal allowed execute-api:Invoke."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )

    def openapi() -> dict[str, Any]:
        # The create body is read raw (size-bounded) and validated by hand, so FastAPI does
        # not see its model: add its schema where the route's requestBody points.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            body = CreateBot.model_json_schema(ref_template="#/components/schemas/{model}")
            document.setdefault("components", {}).setdefault("schemas", {})["CreateBot"] = body
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status_code, exc.error, exc.message)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Logged once here, with its traceback; the caller gets no internals.
        logger.error("control API request failed", exc_info=exc)
        return problem(500, "internal_error", "unexpected error; retry later")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(400, "invalid_request", describe(exc.errors()))

    @app.post(
        f"{API_PREFIX}/bots",
        status_code=201,
        response_model=CreatedBot,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CreateBot"}}
                },
            }
        },
    )
    async def create_bot(
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=MAX_IDEMPOTENCY_KEY_CHARS, pattern=r"^[\x21-\x7e]+$"),
        ] = None,
    ) -> JSONResponse:
        body = await _json_body(request)
        try:
            spec = CreateBot.model_validate_json(body)
        except ValidationError as exc:
            raise ApiError(400, "invalid_request", describe(exc.errors())) from None
        return await run_in_threadpool(
            bot_creation.create, resolver.get(), spec, body, idempotency_key, _caller(request)
        )

    @app.get(f"{API_PREFIX}/bots", response_model=BotList, responses=ERRORS)
    async def list_bots(
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        days: Annotated[int, Query(ge=0, le=366)] = 30,
    ) -> BotList:
        from cli import render

        records = bot_records(resolver.get())
        found = await run_in_threadpool(aws_call, records.recent, limit, render.now_utc(), days)
        return BotList(bots=[render.public(b) for b in found])

    @app.get(f"{API_PREFIX}/bots/{{bot_id}}", response_model=BotView, responses=ERRORS)
    async def show_bot(bot_id: BotId) -> BotView:
        from cli import render

        details = await run_in_threadpool(bot_actions.details, resolver.get(), _checked(bot_id))
        return BotView(
            bot=render.public(details.state),
            events=[render.public(e) for e in details.events],
            connections=[render.public(c) for c in details.connections],
            turns=[render.public(t) for t in details.turns],
        )

    @app.post(
        f"{API_PREFIX}/bots/{{bot_id}}/leave",
        status_code=202,
        response_model=Leaving,
        responses=ERRORS,
    )
    async def leave(bot_id: BotId) -> Leaving:
        return await run_in_threadpool(bot_actions.leave, resolver.get(), _checked(bot_id))

    @app.get(
        f"{API_PREFIX}/bots/{{bot_id}}/transcript", response_model=Transcript, responses=ERRORS
    )
    async def transcript(bot_id: BotId) -> Transcript:
        from cli import render

        details = await run_in_threadpool(bot_actions.details, resolver.get(), _checked(bot_id))
        return Transcript(turns=[render.public(t) for t in details.turns])

    @app.get(f"{API_PREFIX}/bots/{{bot_id}}/notes", response_model=Notes, responses=ERRORS)
    async def notes(bot_id: BotId) -> Notes:
        from cli import render

        runtime = resolver.get()
        checked = _checked(bot_id)
        await run_in_threadpool(bot_actions.details, runtime, checked)  # 404 for an unknown bot
        found = await run_in_threadpool(aws_call, bot_records(runtime).notes, checked)
        return Notes(notes=[render.public(n) for n in found])

    @app.get(f"{API_PREFIX}/bots/{{bot_id}}/minutes", response_model=MinutesView, responses=ERRORS)
    async def minutes(bot_id: BotId) -> JSONResponse:
        from cli import render

        checked = _checked(bot_id)
        job = await run_in_threadpool(aws_call, bot_records(resolver.get()).minutes, checked)
        if job is None or "minutes" not in job:
            state = job.get("job_state") if job else "not started"
            raise ApiError(404, "minutes_not_ready", f"no minutes for {checked} yet ({state})")
        shown = render.public(job)
        shown["minutes"] = json.loads(job["minutes"])
        for internal in ("claim_id", "lease_until"):
            shown.pop(internal, None)
        return JSONResponse(shown)

    return app


# Request helpers


def _checked(bot_id: str) -> str:
    if not schema.is_valid_id(bot_id):
        raise ApiError(400, "invalid_request", "bot_id: printable, no whitespace, ≤ 256 bytes")
    return bot_id


def _caller(request: Request) -> str:
    """The caller's IAM principal (API Gateway's IAM authorizer), or ``local``."""
    event = request.scope.get("aws.event") or {}
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    arn = iam.get("userArn") or iam.get("callerId")
    return str(arn) if arn else "local"


async def _json_body(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


app = create_app()


class _LambdaEntry:
    """Mangum around ``app``, built on the first call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handler: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self._handler is None:
            with self._lock:
                if self._handler is None:
                    from mangum import Mangum

                    self._handler = Mangum(app, lifespan="off")
        return self._handler(event, context)


handler = _LambdaEntry()
