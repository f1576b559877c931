"""The control API's HTTP boundary: routes, one error mapping, the Lambda handler.

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
filled in or the table unreachable. Authentication is API Gateway's (IAM/SigV4, before
the function runs); the caller's IAM principal scopes its idempotency keys.

Importing this module reads no environment and calls no AWS API.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from control_api.models import (
    BotList,
    BotView,
    CreateBot,
    CreatedBot,
    Leaving,
    MinutesView,
    Notes,
    Problem,
    Transcript,
)
from control_api.settings import ConfigError, Secrets, Settings, load_settings
from storage import schema
from storage.minutes import is_valid_memory_key
from storage.requests import MAX_IDEMPOTENCY_KEY_CHARS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from cli.bot_records import BotRecords

logger = logging.getLogger("control_api")

API_PREFIX: Final = "/v1"
MAX_BODY_BYTES: Final = 16 * 1024
#: Recall calls inside one API request stop well before API Gateway's 30 s.
RECALL_MAX_WAIT_SECONDS: Final = 12.0


class ApiError(Exception):
    """An answer other than success: status, stable code, a message safe to show."""

    def __init__(self, status_code: int, error: str, message: str) -> None:
        """Keep the wire form."""
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message


class NotRecordedError(ApiError):
    """Recall created the bot but the table refused its record (503, naming the bot)."""

    def __init__(self, bot_id: str, region: str, reason: str) -> None:
        """Say what exists, so the bot is not lost."""
        super().__init__(
            503,
            "not_recorded",
            f"bot {bot_id} was created in {region} but not recorded ({reason}); "
            "retrying with the same Idempotency-Key will not create another",
        )


@dataclass(frozen=True, slots=True)
class Runtime:
    """What requests need, built once per process."""

    settings: Settings
    secrets: Secrets
    table: Table
    recall_transport: Any = None  # an httpx transport, for tests; None: the network


class RuntimeResolver:
    """Builds the runtime on first use (thread-safe)."""

    def __init__(self, factory: Callable[[], Runtime]) -> None:
        """``factory`` builds the runtime."""
        self._factory = factory
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        """The runtime (a configuration error is a 503)."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    try:
                        self._runtime = self._factory()
                    except ConfigError as exc:
                        raise ApiError(503, "not_configured", str(exc)) from None
        return self._runtime


def default_runtime(settings: Settings | None = None) -> Runtime:
    """The deployed runtime: settings from the environment, a boto3 table."""
    import boto3

    settings = settings or load_settings()
    table = boto3.resource("dynamodb").Table(settings.table_name)
    return Runtime(settings=settings, secrets=Secrets(settings), table=table)


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (400, "malformed request"),
        (404, "no such bot (or no minutes yet)"),
        (409, "a create with this Idempotency-Key is in progress"),
        (413, "body over 16 KiB"),
        (415, "body is not JSON"),
        (422, "Idempotency-Key reused with another body"),
        (502, "Recall refused or failed"),
        (503, "a secret is not filled in, or the table is unreachable"),
    )
}

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
        return _problem(exc.status_code, exc.error, exc.message)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Logged once here, with its traceback; the caller gets no internals.
        logger.error("control API request failed", exc_info=exc)
        return _problem(500, "internal_error", "unexpected error; retry later")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem(400, "invalid_request", _describe(exc.errors()))

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
            raise ApiError(400, "invalid_request", _describe(exc.errors())) from None
        return await run_in_threadpool(
            _create, resolver.get(), spec, body, idempotency_key, _caller(request)
        )

    @app.get(f"{API_PREFIX}/bots", response_model=BotList, responses=ERRORS)
    async def list_bots(
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        days: Annotated[int, Query(ge=0, le=366)] = 30,
    ) -> BotList:
        from cli import render

        records = _records(resolver.get())
        found = await run_in_threadpool(_aws, records.recent, limit, render.now_utc(), days)
        return BotList(bots=[render.public(b) for b in found])

    @app.get(f"{API_PREFIX}/bots/{{bot_id}}", response_model=BotView, responses=ERRORS)
    async def show_bot(bot_id: BotId) -> BotView:
        from cli import render

        details = await run_in_threadpool(_details, resolver.get(), _checked(bot_id))
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
        return await run_in_threadpool(_leave, resolver.get(), _checked(bot_id))

    @app.get(
        f"{API_PREFIX}/bots/{{bot_id}}/transcript", response_model=Transcript, responses=ERRORS
    )
    async def transcript(bot_id: BotId) -> Transcript:
        from cli import render

        details = await run_in_threadpool(_details, resolver.get(), _checked(bot_id))
        return Transcript(turns=[render.public(t) for t in details.turns])

    @app.get(f"{API_PREFIX}/bots/{{bot_id}}/notes", response_model=Notes, responses=ERRORS)
    async def notes(bot_id: BotId) -> Notes:
        from cli import render

        runtime = resolver.get()
        checked = _checked(bot_id)
        await run_in_threadpool(_details, runtime, checked)  # 404 for an unknown bot
        found = await run_in_threadpool(_aws, _records(runtime).notes, checked)
        return Notes(notes=[render.public(n) for n in found])

    @app.get(f"{API_PREFIX}/bots/{{bot_id}}/minutes", response_model=MinutesView, responses=ERRORS)
    async def minutes(bot_id: BotId) -> JSONResponse:
        from cli import render

        checked = _checked(bot_id)
        job = await run_in_threadpool(_aws, _records(resolver.get()).minutes, checked)
        if job is None or "minutes" not in job:
            state = job.get("job_state") if job else "not started"
            raise ApiError(404, "minutes_not_ready", f"no minutes for {checked} yet ({state})")
        shown = render.public(job)
        shown["minutes"] = json.loads(job["minutes"])
        for internal in ("claim_id", "lease_until"):
            shown.pop(internal, None)
        return JSONResponse(shown)

    return app


# Operations (run in a worker thread: boto3 and httpx block)


def _create(
    runtime: Runtime, spec: CreateBot, body: bytes, key: str | None, caller: str
) -> JSONResponse:
    from control_api.idempotency import Idempotency, InProgressError, KeyReusedError

    idempotency = Idempotency(runtime.table)
    if key is not None:
        try:
            replay = _aws(idempotency.begin, caller, key, body)
        except KeyReusedError:
            raise ApiError(
                422, "idempotency_key_reused", "this Idempotency-Key was used with another body"
            ) from None
        except InProgressError:
            raise ApiError(
                409, "in_progress", "a create with this Idempotency-Key is in progress; retry"
            ) from None
        if replay is not None:
            return JSONResponse(
                json.loads(replay.body),
                status_code=replay.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
    try:
        created = _create_bot(runtime, spec)
    except NotRecordedError:
        # Recall made the bot: the key stays claimed (a retry must not make a second one).
        raise
    except BaseException:
        if key is not None:
            # Nothing was created: release the key so the caller may retry at once.
            _aws(idempotency.abandon, caller, key)
        raise
    answer = created.model_dump()
    if key is not None:
        _aws(idempotency.finish, caller, key, 201, json.dumps(answer))
    return JSONResponse(answer, status_code=201)


def _create_bot(runtime: Runtime, spec: CreateBot) -> CreatedBot:
    """What ``voicebot bot create`` does, with the same pieces."""
    from cli.bot_request import BotSpec, InvalidInput, meeting_platform, with_token, without_token
    from cli.errors import CliError, RecallApiError
    from cli.persona import automatic_leave, operator_agent
    from cli.recall_api import REGION_BASE_URLS, RecallClient, RetryPolicy, base_url
    from relay import tokens

    now = datetime.now(UTC)
    region = spec.region or runtime.settings.recall_region
    problems: list[str] = []
    if region not in REGION_BASE_URLS:
        problems.append(f"region: one of {', '.join(REGION_BASE_URLS)}")
    try:
        meeting_platform(spec.meeting_url)
    except InvalidInput as exc:
        problems.append(f"meeting_url: {exc}")
    when = spec.join_at
    if when is not None:
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        if when <= now:
            problems.append("join_at: must be in the future")
    if spec.memory_key is not None and not is_valid_memory_key(spec.memory_key):
        problems.append("memory_key: 1-128 printable characters, no whitespace")
    if problems:
        raise ApiError(400, "invalid_request", "; ".join(problems))
    records = _records(runtime)
    session_id = str(uuid.uuid4())
    wait = (when - now).total_seconds() if when else 0.0
    secret = _secret(runtime.secrets.relay_token_secret)
    token = tokens.mint(secret, session_id, spec.token_ttl + int(wait), now=now.timestamp())
    try:
        bot_spec = BotSpec(
            meeting_url=spec.meeting_url,
            bot_name=spec.bot_name,
            session_id=session_id,
            page_url=with_token(runtime.settings.agent_page_url, token),
            join_at=when,
            persona=spec.persona,
            # The agent config the relay image carries (relay_container/agent.yaml).
            automatic_leave=automatic_leave(operator_agent(None), None),
        )
    except InvalidInput as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    key = _secret(runtime.secrets.recall_key)
    policy = RetryPolicy(max_attempts=3, max_total_wait=RECALL_MAX_WAIT_SECONDS)
    try:
        with RecallClient(
            api_key=key,
            region=region,
            base=base_url(region, runtime.settings.recall_api_base),
            policy=policy,
            timeout=10.0,
            transport=runtime.recall_transport,
        ) as recall:
            bot = recall.create_bot(bot_spec.request())
    except RecallApiError as exc:
        raise ApiError(502, "recall_error", str(exc)) from None
    except CliError as exc:
        raise ApiError(502, "recall_error", str(exc)) from None
    bot_id = str(bot["id"])
    try:
        _record(records, bot_id, session_id, region, spec, now)
    except ApiError as exc:
        raise NotRecordedError(bot_id, region, exc.message) from None
    return CreatedBot(
        bot_id=bot_id,
        session_id=session_id,
        region=region,
        page_url=without_token(bot_spec.page_url),
        join_at=bot_spec.request().get("join_at"),
        recorded=True,
    )


def _record(
    records: BotRecords,
    bot_id: str,
    session_id: str,
    region: str,
    spec: CreateBot,
    now: datetime,
) -> None:
    """Record a bot Recall created, as ``voicebot bot create`` does."""
    from cli.bot_records import CreatedBot as CreatedRecord

    _aws(
        records.record_created,
        CreatedRecord(
            bot_id=bot_id,
            session_id=session_id,
            region=region,
            meeting_url=spec.meeting_url,
            bot_name=spec.bot_name,
            created_at=now,
        ),
    )
    _aws(records.record_session, session_id, bot_id, spec.memory_key)


def _leave(runtime: Runtime, bot_id: str) -> Leaving:
    from cli.errors import CliError
    from cli.recall_api import RecallClient, RetryPolicy, base_url

    state = _aws(_records(runtime).state, bot_id)
    if state is None:
        raise ApiError(404, "unknown_bot", f"no bot {bot_id}")
    recorded = state.get("region")
    region = recorded if isinstance(recorded, str) else runtime.settings.recall_region
    key = _secret(runtime.secrets.recall_key)
    try:
        with RecallClient(
            api_key=key,
            region=region,
            base=base_url(region, runtime.settings.recall_api_base),
            policy=RetryPolicy(max_attempts=3, max_total_wait=RECALL_MAX_WAIT_SECONDS),
            timeout=10.0,
            transport=runtime.recall_transport,
        ) as recall:
            recall.leave_call(bot_id)
    except CliError as exc:
        raise ApiError(502, "recall_error", str(exc)) from None
    return Leaving(bot_id=bot_id, region=region)


def _details(runtime: Runtime, bot_id: str) -> Any:
    details = _aws(_records(runtime).details, bot_id)
    if details is None:
        raise ApiError(404, "unknown_bot", f"no bot {bot_id}")
    return details


# Helpers


def _records(runtime: Runtime) -> BotRecords:
    from cli.bot_records import BotRecords

    return BotRecords(runtime.table)


def _aws(call: Callable[..., Any], *args: Any) -> Any:
    """Run a table call; unreachable or refusing AWS is a 503."""
    from cli.errors import AwsError

    try:
        return call(*args)
    except AwsError as exc:
        raise ApiError(503, "table_unavailable", str(exc)) from None
    except Exception as exc:
        import botocore.exceptions

        if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
            raise ApiError(503, "table_unavailable", type(exc).__name__) from None
        raise


def _secret(read: Callable[[], str]) -> str:
    try:
        return read()
    except ConfigError as exc:
        raise ApiError(503, "not_configured", str(exc)) from None


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


def _describe(errors: Any) -> str:
    """Validation errors as ``field: problem``; never the submitted values."""
    parts = []
    for error in list(errors)[:10]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _problem(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


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
