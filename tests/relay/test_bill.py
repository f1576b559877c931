"""The bounded bill through a real relay: limits reached → goodbye → Recall leave, once.

Over sockets: the client and the relay, the relay and a scripted GA upstream (whose
``response.done`` carries GA ``usage``), moto's DynamoDB (bindings, records, a resume), and
a fake Recall API over HTTP that records the bot's leave request.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import boto3
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.agent import AgentConfig
from relay.record_table import RetryPolicy
from relay.record_writer import SessionRecorder
from relay.server import Relay
from storage import leaving, minutes, schema, times
from tests.cli.fake_recall import Answer, FakeRecall
from tests.relay.conftest import (
    SENSITIVE,
    FakeUpstream,
    StartRelay,
    eventually,
    mint,
    open_client,
    recv_json,
)

RECALL_KEY = "recall-test-key-0123456789"
SENSITIVE.add(RECALL_KEY)

PRICE = {
    "text_input": 4.0,
    "text_cached_input": 0.4,
    "text_output": 24.0,
    "audio_input": 32.0,
    "audio_cached_input": 0.4,
    "audio_output": 64.0,
}


def billing_model(usages: list[Any]) -> Any:
    """A GA fake model: each response.create gets response.created, audio, and a
    response.done with the next of ``usages`` (its metadata echoed, as GA does)."""

    async def script(ws: ServerConnection, upstream: FakeUpstream) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
            async for message in ws:
                assert isinstance(message, str)
                upstream.received.append(message)
                event = json.loads(message)
                if event["type"] == "session.update":
                    await ws.send(json.dumps({"type": "session.updated", "session": {}}))
                elif event["type"] == "response.create":
                    metadata = event.get("response", {}).get("metadata")
                    response = {"id": f"resp_{len(upstream.received)}", "metadata": metadata}
                    await ws.send(json.dumps({"type": "response.created", "response": response}))
                    for _ in range(3):
                        await ws.send(
                            json.dumps({"type": "response.output_audio.delta", "delta": "AAAA"})
                        )
                    usage = usages.pop(0) if usages else {"total_tokens": 1}
                    done = {**response, "status": "completed", "usage": usage}
                    await ws.send(json.dumps({"type": "response.done", "response": done}))

    return script


def ga_usage(total: int, audio_out: int = 0) -> dict[str, Any]:
    return {
        "total_tokens": total,
        "input_tokens": total - audio_out,
        "output_tokens": audio_out,
        "input_token_details": {"text_tokens": total - audio_out, "cached_tokens": 0},
        "output_token_details": {"audio_tokens": audio_out, "text_tokens": 0},
    }


@pytest.fixture
def dynamodb_env(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    return dynamodb_endpoint


def bind(endpoint: str, table: str, session_id: str, bot_id: str, overlay: Any = None) -> None:
    """What ``voicebot bot create`` records for the relay (``SessionAgent``)."""
    item: dict[str, Any] = {
        schema.PARTITION_KEY: schema.session_pk(session_id),
        schema.SORT_KEY: schema.SESSION_AGENT_SK,
        "session_id": session_id,
        "bot_id": bot_id,
        "created_at": "2026-12-03T12:00:00.000000Z",
    }
    if overlay:
        item["overlay"] = overlay
    boto3.resource("dynamodb", endpoint_url=endpoint).Table(table).put_item(Item=item)


async def start(
    start_relay: StartRelay,
    upstream: FakeUpstream,
    table: str,
    endpoint: str,
    recall: FakeRecall,
    bill: dict[str, Any],
) -> Relay:
    recorder = SessionRecorder(
        table,
        region="us-east-1",
        endpoint_url=endpoint,
        retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
    )
    agent = AgentConfig.model_validate(
        {
            "bill": {
                "warn_minutes_before": 0,
                "goodbye_linger_seconds": 0,
                "goodbye_timeout_seconds": 5,
                **bill,
            }
        }
    )
    return await start_relay(
        upstream.url,
        recorder,
        agent,
        table_name=table,
        recall_api_key=RECALL_KEY,
        recall_api_base=f"{recall.url}/{{region}}",
    )


def leaves(recall: FakeRecall, bot_id: str) -> list[Any]:
    return [r for r in recall.requests if r.path.endswith(f"/bot/{bot_id}/leave_call/")]


def goodbyes(upstream: FakeUpstream) -> list[dict[str, Any]]:
    sent = [json.loads(m) for m in upstream.received]
    return [
        e
        for e in sent
        if e["type"] == "response.create"
        and e.get("response", {}).get("metadata", {}).get("relay") == "goodbye"
    ]


async def said_goodbye_and_left(ws: Any, relay: Relay, upstream: FakeUpstream) -> list[str]:
    """Everything the client received until the relay closed it with 1000 after the leave."""
    seen: list[str] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            seen.append((await recv_json(ws))["type"])
    assert ws.close_code == 1000
    assert "limit" in (ws.close_reason or "")
    await eventually(lambda: not relay.sessions)
    if upstream.url:  # a scripted model: it saw exactly one goodbye
        assert len(goodbyes(upstream)) == 1
    return seen


async def test_the_minutes_limit_says_goodbye_then_leaves_the_meeting_once(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    fake_upstream.script = billing_model([])
    bind(dynamodb_env, table_name, "sess-minutes", "bot-minutes")
    relay = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_minutes": 0.04}
    )
    async with open_client(relay, mint("sess-minutes")) as ws:
        seen = await said_goodbye_and_left(ws, relay, fake_upstream)
    # The goodbye was spoken to the meeting before the bot left.
    assert "response.output_audio.delta" in seen
    assert "response.done" in seen
    [leave] = leaves(fake_recall, "bot-minutes")
    assert leave.method == "POST"
    assert leave.headers.get("authorization") == RECALL_KEY
    assert relay.metrics.counters["BillLimitMinutes"] == 1


@pytest.mark.parametrize(
    ("bill", "counter"),
    [
        ({"max_tokens": 1000}, "BillLimitTokens"),
        ({"max_cost_usd": 0.05, "prices": {"gpt-realtime-2.1": PRICE}}, "BillLimitCost"),
    ],
)
async def test_usage_in_response_done_reaches_the_token_or_cost_limit(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
    bill: dict[str, Any],
    counter: str,
) -> None:
    """Malformed usage is ignored (the session goes on); 1,000 tokens of which 800 output
    audio ($0.0512 at $64/1M, over $0.05) reach the limit: goodbye, leave, once."""
    hostile = [{"total_tokens": -(10**9)}, "lots", {"total_tokens": True}, {"total_tokens": 10**15}]
    fake_upstream.script = billing_model([*hostile, ga_usage(400, 300), ga_usage(600, 500)])
    bind(dynamodb_env, table_name, "sess-usage", "bot-usage")
    relay = await start(start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, bill)
    async with open_client(relay, mint("sess-usage")) as ws:
        for _ in range(len(hostile) + 1):
            await ws.send(json.dumps({"type": "response.create"}))
            while (await recv_json(ws))["type"] != "response.done":
                pass
        assert goodbyes(fake_upstream) == []
        assert leaves(fake_recall, "bot-usage") == []
        await ws.send(json.dumps({"type": "response.create"}))
        seen = await said_goodbye_and_left(ws, relay, fake_upstream)
    assert seen.count("response.done") == 2  # the answer that crossed it, then the goodbye
    assert len(leaves(fake_recall, "bot-usage")) == 1
    assert relay.metrics.counters[counter] == 1


async def test_usage_carries_over_to_the_task_that_resumes_the_session(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    """600 tokens on relay A, 500 on relay B (a handover): B reaches the 1,000 limit."""
    fake_upstream.script = billing_model([ga_usage(600), ga_usage(500)])
    bind(dynamodb_env, table_name, "sess-resume", "bot-resume")
    bill = {"max_tokens": 1000}
    relay_a = await start(start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, bill)
    relay_b = await start(start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, bill)
    token = mint("sess-resume")
    async with open_client(relay_a, token) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        while (await recv_json(ws))["type"] != "response.done":
            pass
    await eventually(lambda: not relay_a.sessions)
    await relay_a.recorder.flush(5.0)
    async with open_client(relay_b, token) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        await said_goodbye_and_left(ws, relay_b, fake_upstream)
    assert len(leaves(fake_recall, "bot-resume")) == 1


async def test_minutes_count_from_the_sessions_first_start_across_a_resume(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    """The session's first connection started 9 min 58 s ago (stored): with a 10-minute
    limit the resumed session says goodbye within seconds, not in 10 minutes."""
    fake_upstream.script = billing_model([])
    bind(dynamodb_env, table_name, "sess-old", "bot-old")
    started = times.key_time_from_epoch_ms(int((time.time() - 598) * 1000))
    boto3.resource("dynamodb", endpoint_url=dynamodb_env).Table(table_name).put_item(
        Item={
            schema.PARTITION_KEY: schema.session_pk("sess-old"),
            schema.SORT_KEY: schema.connection_sk(started, "c0"),
            "session_id": "sess-old",
            "connection_id": "c0",
            "started_at": started,
            "usage": {"total_tokens": 5},
        }
    )
    relay = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_minutes": 10}
    )
    async with open_client(relay, mint("sess-old")) as ws:
        await said_goodbye_and_left(ws, relay, fake_upstream)
    assert len(leaves(fake_recall, "bot-old")) == 1


async def test_a_bots_overlay_lowers_its_limit_and_a_session_without_a_bot_only_ends(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    fake_upstream.script = billing_model([ga_usage(50)])
    bind(dynamodb_env, table_name, "sess-low", "bot-low", {"bill": {"max_tokens": 40}})
    relay = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_tokens": 10**6}
    )
    async with open_client(relay, mint("sess-low")) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        await said_goodbye_and_left(ws, relay, fake_upstream)
    assert len(leaves(fake_recall, "bot-low")) == 1
    # No binding: an SDK client's session is bounded too, and no bot is asked to leave.
    fake_upstream.received.clear()
    relay_b = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_tokens": 40}
    )
    fake_upstream.script = billing_model([ga_usage(50)])
    async with open_client(relay_b, mint("sess-sdk")) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        await said_goodbye_and_left(ws, relay_b, fake_upstream)
    assert [r.path for r in fake_recall.requests if "leave_call" in r.path] == [
        "/us-west-2/api/v1/bot/bot-low/leave_call/"
    ]


async def test_usage_carries_over_a_reattach_on_the_same_task(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    """600 tokens, a network blip (no close frame), a re-attach, 500 more: the limit."""
    fake_upstream.script = billing_model([ga_usage(600), ga_usage(500)])
    bind(dynamodb_env, table_name, "sess-blip", "bot-blip")
    relay = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_tokens": 1000}
    )
    token = mint("sess-blip")
    async with open_client(relay, token) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        while (await recv_json(ws))["type"] != "response.done":
            pass
        ws.transport.abort()  # no close frame: a network blip
    [session] = relay.sessions
    await eventually(lambda: session.detached)
    async with open_client(relay, token) as ws:
        await eventually(lambda: not session.detached)
        await ws.send(json.dumps({"type": "response.create"}))
        await said_goodbye_and_left(ws, relay, fake_upstream)
    assert len(fake_upstream.requests) == 1  # one model session throughout
    assert len(leaves(fake_recall, "bot-blip")) == 1


async def test_the_simulated_model_echoes_the_goodbyes_metadata_so_the_bot_leaves_promptly(
    start_relay: StartRelay, simulator_url: str
) -> None:
    """``make dev``'s simulator reports usage and echoes ``metadata`` as GA does: the
    goodbye is recognised when it ends (a 60 s bound would outlast this test's deadline)."""
    agent = AgentConfig.model_validate(
        {
            "bill": {
                "max_tokens": 5,
                "goodbye_timeout_seconds": 60,
                "goodbye_linger_seconds": 0,
            }
        }
    )
    relay = await start_relay(simulator_url, agent=agent)
    async with open_client(relay, mint("sess-sim")) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        seen = await said_goodbye_and_left(ws, relay, FakeUpstream())
    assert seen.count("response.done") == 2


async def test_usage_carries_over_a_rollover_to_a_fresh_model_session(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    """600 tokens on the first model session, a rollover, 500 on the fresh one: the limit."""
    fake_upstream.script = billing_model([ga_usage(600), ga_usage(500)])
    bind(dynamodb_env, table_name, "sess-roll", "bot-roll")
    recorder = SessionRecorder(
        table_name,
        region="us-east-1",
        endpoint_url=dynamodb_env,
        retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
    )
    agent = AgentConfig.model_validate({"bill": {"max_tokens": 1000, "goodbye_linger_seconds": 0}})
    relay = await start_relay(
        fake_upstream.url,
        recorder,
        agent,
        table_name=table_name,
        recall_api_key=RECALL_KEY,
        recall_api_base=f"{fake_recall.url}/{{region}}",
        rollover_seconds=1.0,
    )
    async with open_client(relay, mint("sess-roll")) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        while (await recv_json(ws))["type"] != "response.done":
            pass
        await eventually(lambda: relay.metrics.counters["Rollovers"] >= 1)
        assert len(fake_upstream.requests) >= 2  # a fresh model session
        await ws.send(json.dumps({"type": "response.create"}))
        await said_goodbye_and_left(ws, relay, fake_upstream)
    assert len(leaves(fake_recall, "bot-roll")) == 1


async def test_a_recall_refusal_is_logged_and_the_session_still_ends(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
    relay_logs: list[str],
) -> None:
    """Recall answers 400 to the leave: one attempt (not retried), a warning naming the
    limit, and the session ends anyway (Recall's own hard cap remains)."""
    fake_recall.script(Answer(400, {"detail": "Bot is not in a call"}))
    fake_upstream.script = billing_model([ga_usage(50)])
    bind(dynamodb_env, table_name, "sess-refused", "bot-refused")
    relay = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_tokens": 40}
    )
    async with open_client(relay, mint("sess-refused")) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        await said_goodbye_and_left(ws, relay, fake_upstream)
    assert len(leaves(fake_recall, "bot-refused")) == 1
    failed = [line for line in relay_logs if "leave request failed" in line]
    assert len(failed) == 1
    assert '"limit": "max_tokens"' in failed[0]
    reached = [line for line in relay_logs if '"message": "bill limit reached"' in line]
    assert len(reached) == 1
    assert '"limit": "max_tokens"' in reached[0]


async def test_a_bot_with_chat_minutes_leaves_through_the_minutes_function(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    fake_recall: FakeRecall,
) -> None:
    """The bill's leave is the relay's one leave path (``MeetingExit``): a bot created with
    ``minutes_to_chat`` gets a leave request for the minutes function, not a leave_call."""
    fake_upstream.script = billing_model([])
    bind(dynamodb_env, table_name, "sess-chat", "bot-chat")
    store: Any = boto3.resource("dynamodb", endpoint_url=dynamodb_env).Table(table_name)
    store.put_item(
        Item=dict(minutes.session_bot_item("sess-chat", "bot-chat", minutes_to_chat=True))
    )
    relay = await start(
        start_relay, fake_upstream, table_name, dynamodb_env, fake_recall, {"max_minutes": 0.04}
    )
    async with open_client(relay, mint("sess-chat")) as ws:
        await said_goodbye_and_left(ws, relay, fake_upstream)
    request = store.get_item(Key=leaving.leave_key("bot-chat"), ConsistentRead=True).get("Item")
    assert request is not None
    assert request["reason"] == "usage_limit"
    assert leaves(fake_recall, "bot-chat") == []
