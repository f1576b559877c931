"""``POST /v1/bots``: what ``voicebot bot create`` does, with the same pieces, once per key.

:func:`create` replays the first answer for a repeated ``Idempotency-Key``
(``control_api.idempotency``), validates the request again with the CLI's own checks
(``cli.bot_request``), asks Recall for the bot and records it as the CLI does. Runs in a
worker thread (boto3 and httpx block).
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from cli.errors import ConfigError
from control_api.errors import ApiError, NotRecordedError
from control_api.models import CreateBot, CreatedBot
from control_api.runtime import (
    RECALL_MAX_WAIT_SECONDS,
    Runtime,
    aws_call,
    bot_records,
    secret_value,
)
from storage.delivery_url import minutes_url_problem
from storage.minutes import is_valid_memory_key

if TYPE_CHECKING:
    from cli.bot_records import BotRecords
    from relay.agent import AgentConfig


def create(
    runtime: Runtime, spec: CreateBot, body: bytes, key: str | None, caller: str
) -> JSONResponse:
    from control_api.idempotency import Idempotency, InProgressError, KeyReusedError

    idempotency = Idempotency(runtime.table)
    if key is not None:
        try:
            replay = aws_call(idempotency.begin, caller, key, body)
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
            aws_call(idempotency.abandon, caller, key)
        raise
    answer = created.model_dump()
    if key is not None:
        aws_call(idempotency.finish, caller, key, 201, json.dumps(answer))
    return JSONResponse(answer, status_code=201)


def _create_bot(runtime: Runtime, spec: CreateBot) -> CreatedBot:
    """What ``voicebot bot create`` does, with the same pieces."""
    from cli.bot_request import BotSpec, InvalidInput, meeting_platform, with_token, without_token
    from cli.errors import CliError, RecallApiError
    from cli.persona import automatic_leave
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
    if spec.minutes_url is not None and (problem := minutes_url_problem(spec.minutes_url)):
        problems.append(f"minutes_url: {problem}")
    overlay = None
    leave_rules: dict[str, Any] = {}
    try:
        overlay = persona_overlay(spec)
        leave_rules = automatic_leave(_operator_agent(), overlay)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise ApiError(400, "invalid_request", "; ".join(problems))
    records = bot_records(runtime)
    session_id = str(uuid.uuid4())
    wait = (when - now).total_seconds() if when else 0.0
    secret = secret_value(runtime.secrets.relay_token_secret)
    token = tokens.mint(secret, session_id, spec.token_ttl + int(wait), now=now.timestamp())
    try:
        bot_spec = BotSpec(
            meeting_url=spec.meeting_url,
            bot_name=spec.bot_name,
            session_id=session_id,
            page_url=with_token(runtime.settings.agent_page_url, token),
            join_at=when,
            persona=spec.persona,
            automatic_leave=leave_rules,
        )
    except InvalidInput as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    key = secret_value(runtime.secrets.recall_key)
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
        _record(records, bot_id, session_id, region, spec, now, overlay)
    except ApiError as exc:
        raise NotRecordedError(bot_id, region, exc.message) from None
    return CreatedBot(
        bot_id=bot_id,
        session_id=session_id,
        region=region,
        page_url=without_token(bot_spec.page_url),
        join_at=bot_spec.request().get("join_at"),
        recorded=True,
        persona=sorted(overlay) if overlay else [],
    )


def _record(
    records: BotRecords,
    bot_id: str,
    session_id: str,
    region: str,
    spec: CreateBot,
    now: datetime,
    overlay: dict[str, Any] | None,
) -> None:
    """Record a bot Recall created, as ``voicebot bot create`` does."""
    from cli.bot_records import CreatedBot as CreatedRecord

    created = CreatedRecord(
        bot_id=bot_id,
        session_id=session_id,
        region=region,
        meeting_url=spec.meeting_url,
        bot_name=spec.bot_name,
        created_at=now,
    )
    aws_call(records.record_created, created)
    aws_call(records.record_binding, created, overlay)
    aws_call(
        functools.partial(
            records.record_session,
            session_id,
            bot_id,
            spec.memory_key,
            minutes_to_chat=spec.minutes_to_chat,
            minutes_url=spec.minutes_url,
        )
    )


@functools.cache
def _operator_agent() -> AgentConfig:
    """The operator's agent config this function was deployed with (read once).

    The stack bundles ``relay_container/agent.yaml``, the file the relay image carries,
    where ``cli.persona.operator_agent`` finds it: one set of rules for both. A file the
    relay would refuse too is the operator's fault: 503, not the caller's 400.
    """
    from cli.persona import operator_agent

    try:
        return operator_agent(None)
    except ConfigError as exc:
        raise ApiError(503, "not_configured", f"the deployed agent.yaml: {exc}") from None


def persona_overlay(spec: CreateBot) -> dict[str, Any] | None:
    """The bot's overlay from ``instructions`` or ``agent``, checked as the CLI checks it.

    Raises:
        ConfigError: both given, or the overlay breaks the operator's rules.
    """
    from cli.persona import checked_overlay

    if spec.instructions is not None and spec.agent is not None:
        raise ConfigError("give instructions or agent, not both")
    if spec.agent is not None:
        return checked_overlay(_operator_agent(), spec.agent, source="agent")
    if spec.instructions is not None:
        data = {"instructions": spec.instructions}
        return checked_overlay(_operator_agent(), data, source="instructions")
    return None
