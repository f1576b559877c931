"""The relay's tools over real sockets: built-ins against the fake Recall API and moto's
DynamoDB, HTTP tools against an endpoint that verifies the signature with
``standardwebhooks``, and hostile arguments. Every failure is an answer the model can
speak, never an exception."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.agent import AgentConfig
from relay.config import RelayConfig
from relay.errors import ConfigError
from relay.recall_retry import plan_retry
from relay.tool_calls import ToolCall
from relay.tools.builtins import ToolContext
from relay.tools.recall import TOOL_RETRY_POLICY
from relay.tools.registry import ToolRegistry, build_registry
from tests.cli.fake_recall import Answer, FakeRecall
from tests.relay.tool_endpoint import SECRET, ToolEndpoint

RECALL_KEY = "recall-test-key-0123456789"
BOT_ID = "6f7d2a8e-1c1b-4c1e-9a8f-0d9d4c1b2a3e"
CTX = ToolContext(session_id="sess-1", bot_id=BOT_ID)


def call(name: str, arguments: Any = None, call_id: str = "call_1") -> ToolCall:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return ToolCall(call_id=call_id, name=name, arguments=raw, response_id="resp_1")


def output(result) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(result.output)
    assert payload["ok"] is result.ok
    return payload


@pytest.fixture
def endpoint() -> Iterator[ToolEndpoint]:
    server = ToolEndpoint()
    server.start()
    try:
        yield server
    finally:
        server.close()


def agent_tools(*entries: dict[str, Any]) -> list[Any]:
    return list(AgentConfig.model_validate({"tools": list(entries)}).tools)


@pytest.fixture
async def registry(
    fake_recall: FakeRecall, endpoint: ToolEndpoint, table_name: str, dynamodb_endpoint: str
) -> AsyncIterator[ToolRegistry]:
    tools = agent_tools(
        {"builtin": "leave_meeting"},
        {"builtin": "send_chat_message"},
        {"builtin": "take_note"},
        {"builtin": "list_notes"},
        {"builtin": "end_turn_silently"},
        {"name": "lookup", "description": "Look it up.", "url": endpoint.url("/good")},
        {
            "name": "slow",
            "description": "Slow.",
            "url": endpoint.url("/slow"),
            "timeout_seconds": 0.5,
        },
        {"name": "fail", "description": "Fails.", "url": endpoint.url("/fail")},
        {
            "name": "big",
            "description": "Big.",
            "url": endpoint.url("/big"),
            "max_response_bytes": 1024,
        },
        {"name": "text", "description": "Text.", "url": endpoint.url("/text")},
        {"name": "moved", "description": "Moved.", "url": endpoint.url("/redirect")},
        {"type": "function", "name": "client_side", "parameters": {}},
    )
    reg = build_registry(
        tools,
        recall_api_key=RECALL_KEY,
        recall_region="us-west-2",
        recall_api_base=f"{fake_recall.url}/{{region}}",
        signing_secret=SECRET,
        table_name=table_name,
        dynamodb_endpoint=dynamodb_endpoint,
    )
    try:
        yield reg
    finally:
        await reg.aclose()


# Registry


async def test_registry_owns_relay_tools_only(registry):
    """Built-ins and HTTP tools are the relay's; a plain function stays the client's."""
    assert registry.owns("take_note")
    assert registry.owns("lookup")
    assert not registry.owns("client_side")
    declared = {d["name"]: d for d in registry.declarations()}
    assert "client_side" not in declared
    assert declared["lookup"] == {
        "type": "function",
        "name": "lookup",
        "description": "Look it up.",
        "parameters": {"type": "object", "properties": {}},
    }
    assert "url" not in json.dumps(registry.declarations())


async def test_bot_overlay_narrows_the_tools(registry, fake_recall):
    """A bot that chose [take_note] gets only that: other relay tools are not its to run."""
    narrowed = registry.only(["take_note"])
    assert narrowed.names == {"take_note"}
    assert [d["name"] for d in narrowed.declarations()] == ["take_note"]
    result = await narrowed.run(call("leave_meeting"), CTX)
    assert output(result)["ok"] is False
    assert fake_recall.requests == []


def test_session_update_hides_tool_urls():
    """The model sees a tool's declaration, never the operator's URL."""
    agent = AgentConfig.model_validate(
        {
            "tools": [
                {"builtin": "take_note"},
                {"name": "lookup", "description": "x", "url": "https://tools.example.com/x"},
            ]
        }
    )
    raw = agent.session_update().decode()
    assert "tools.example.com" not in raw
    names = [t["name"] for t in json.loads(raw)["session"]["tools"]]
    assert names == ["take_note", "lookup"]


def test_build_registry_lists_every_missing_dependency():
    """Opted-in tools without their key, table or secret fail at start-up, all at once."""
    tools = agent_tools(
        {"builtin": "leave_meeting"},
        {"builtin": "take_note"},
        {"name": "lookup", "description": "x", "url": "https://tools.example.com/x"},
    )
    with pytest.raises(ConfigError) as raised:
        build_registry(tools)
    text = str(raised.value)
    assert "RECALL_API_KEY" in text
    assert "TABLE_NAME" in text
    assert "RELAY_TOOL_SIGNING_SECRET" in text


@pytest.mark.parametrize(
    "entry",
    [
        {"builtin": "format_disk"},
        {"builtin": "take_note", "url": "https://x.example.com"},
        {"name": "take_note", "description": "x", "url": "https://x.example.com"},
        {"name": "bad name!", "description": "x", "url": "https://x.example.com"},
        {"name": "x", "description": "x", "url": "ftp://x.example.com"},
        {"name": "x", "description": "x", "url": "https://user:pw@x.example.com"},
        {"name": "x", "description": "x", "url": "https://x.example.com", "timeout": 3},
        {"name": "x", "description": "x", "url": "https://x.example.com", "timeout_seconds": 0},
    ],
    ids=[
        "unknown-builtin",
        "builtin-with-url",
        "http-shadows-builtin",
        "bad-name",
        "not-http",
        "credentials-in-url",
        "typo-field",
        "zero-timeout",
    ],
)
def test_bad_tool_entries_are_refused(entry):
    """A wrong tool entry is an agent.yaml error, never a tool silently sent to the model."""
    with pytest.raises(ValueError, match="tools"):
        AgentConfig.model_validate({"tools": [entry]})


def test_duplicate_tool_names_are_refused():
    """Two tools of one name would make calls ambiguous: refused."""
    with pytest.raises(ValueError, match="declared twice"):
        AgentConfig.model_validate({"tools": [{"builtin": "take_note"}, {"builtin": "take_note"}]})


# Built-ins against Recall


async def test_leave_meeting_calls_recall_with_the_key(registry, fake_recall):
    """leave_meeting POSTs leave_call for the session's bot with Authorization: <key>."""
    result = await registry.run(call("leave_meeting"), CTX)
    assert output(result) == {"ok": True, "left": True}
    [request] = fake_recall.requests
    assert request.method == "POST"
    assert request.path == f"/us-west-2/api/v1/bot/{BOT_ID}/leave_call/"
    assert request.headers["authorization"] == RECALL_KEY


async def test_send_chat_message_posts_to_everyone(registry, fake_recall):
    """send_chat_message sends the model's text to everyone in the meeting chat."""
    result = await registry.run(call("send_chat_message", {"message": "https://x.y/z"}), CTX)
    assert output(result)["ok"] is True
    [request] = fake_recall.requests
    assert request.path == f"/us-west-2/api/v1/bot/{BOT_ID}/send_chat_message/"
    assert request.body == {"to": "everyone", "message": "https://x.y/z"}
    assert request.headers["authorization"] == RECALL_KEY


async def test_recall_429_is_retried_after_retry_after(registry, fake_recall):
    """A 429 with Retry-After is waited out and retried, as the CLI does."""
    fake_recall.script(Answer(429, {"detail": "slow down"}, {"Retry-After": "0"}))
    result = await registry.run(call("send_chat_message", {"message": "hi"}), CTX)
    assert output(result)["ok"] is True
    assert len(fake_recall.requests) == 2


async def test_recall_long_retry_after_is_a_tool_error(registry, fake_recall):
    """A 507 asking for 30 s gives up at once: the model says it could not, the call goes on."""
    fake_recall.script(Answer(507, {"detail": "no bots"}, {"Retry-After": "30"}))
    result = await registry.run(call("leave_meeting"), CTX)
    payload = output(result)
    assert payload["ok"] is False
    assert "507" in payload["error"]
    assert "no bots" in payload["error"]
    assert len(fake_recall.requests) == 1


async def test_recall_refusal_is_explained_not_retried(registry, fake_recall):
    """A 401 is not retried, and the key never appears in what the model reads."""
    fake_recall.script(Answer(401, {"detail": "Invalid token."}))
    result = await registry.run(call("leave_meeting"), CTX)
    payload = output(result)
    assert "401" in payload["error"]
    assert RECALL_KEY not in result.output
    assert len(fake_recall.requests) == 1


@pytest.mark.parametrize(
    "ctx",
    [ToolContext("s"), ToolContext("s", bot_id="../../admin"), ToolContext("s", bot_id="a/b?c")],
    ids=["no-bot", "path-traversal", "query-injection"],
)
async def test_no_valid_bot_means_no_recall_request(registry, fake_recall, ctx):
    """Without a valid bot id the tool answers an error and Recall is never called."""
    result = await registry.run(call("leave_meeting"), ctx)
    assert output(result)["ok"] is False
    assert fake_recall.requests == []


async def test_end_turn_silently_asks_for_no_answer(registry):
    """end_turn_silently succeeds and tells the relay not to make the model speak."""
    result = await registry.run(call("end_turn_silently"), CTX)
    assert result.ok
    assert result.respond is False


# Notes


async def test_take_note_then_list_notes(registry):
    """A note taken is stored under the bot and read back, oldest first."""
    first = await registry.run(call("take_note", {"text": "Ship on  Friday"}), CTX)
    second = await registry.run(call("take_note", {"text": "Ann owns QA"}, "call_2"), CTX)
    assert first.ok
    assert second.ok
    listed = output(await registry.run(call("list_notes", call_id="call_3"), CTX))
    assert [n["text"] for n in listed["notes"]] == ["Ship on Friday", "Ann owns QA"]


async def test_notes_of_another_bot_are_not_listed(registry):
    """Notes are per bot: another bot's session reads none of them."""
    await registry.run(call("take_note", {"text": "secret plan"}), CTX)
    other = ToolContext("sess-2", bot_id="00000000-0000-0000-0000-000000000000")
    listed = output(await registry.run(call("list_notes"), other))
    assert listed["notes"] == []


HOSTILE_ARGUMENTS = [
    ("take_note", "not json"),
    ("take_note", "[1, 2]"),
    ("take_note", json.dumps({"text": 42})),
    ("take_note", json.dumps({"text": "   "})),
    ("take_note", json.dumps({"text": "x" * 5000})),
    ("take_note", json.dumps({"text": "x"}) * 10_000),
    ("take_note", "[" * 100_000),
    ("send_chat_message", json.dumps({"message": "x" * 5000})),
    ("send_chat_message", json.dumps({})),
    ("unknown_tool", "{}"),
]


@pytest.mark.parametrize(
    ("name", "arguments"),
    HOSTILE_ARGUMENTS,
    ids=[
        "not-json",
        "array",
        "text-not-string",
        "blank-text",
        "note-too-long",
        "arguments-too-long",
        "deep-nesting",
        "chat-too-long",
        "chat-missing-message",
        "unknown-tool",
    ],
)
async def test_hostile_arguments_become_tool_errors(registry, fake_recall, name, arguments):
    """Bad arguments never raise and never reach Recall: the model gets an error to talk about."""
    result = await registry.run(call(name, arguments), CTX)
    payload = output(result)
    assert payload["ok"] is False
    assert payload["error"]
    assert fake_recall.requests == []


# HTTP tools


async def test_http_tool_request_is_signed_and_shaped(registry, endpoint):
    """The endpoint verifies our signature with standardwebhooks and gets the documented body."""
    result = await registry.run(call("lookup", {"order": "A-17"}, "call_77"), CTX)
    assert output(result) == {"ok": True, "result": {"echo": {"order": "A-17"}}}
    [received] = endpoint.received
    assert received.verified == {
        "tool": "lookup",
        "call_id": "call_77",
        "arguments": {"order": "A-17"},
        "bot_id": BOT_ID,
        "session_id": "sess-1",
    }
    assert received.headers["webhook-id"] == "msg_call_77"
    assert received.headers["content-type"] == "application/json"


async def test_http_tool_signed_with_another_secret_is_rejected(endpoint, registry):
    """Our signature is what the endpoint checks: a different secret fails verification."""
    other = build_registry(
        agent_tools({"name": "lookup", "description": "x", "url": endpoint.url("/good")}),
        signing_secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
    )
    try:
        result = await other.run(call("lookup"), CTX)
    finally:
        await other.aclose()
    assert output(result)["ok"] is False
    assert "401" in output(result)["error"]
    assert endpoint.received[-1].verified is None


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("slow", "longer than 0.5 s"),
        ("fail", "answered 500"),
        ("big", "more than 1024 bytes"),
        ("text", "not JSON"),
        ("moved", "redirect, not followed"),
    ],
    ids=["slow-timeout", "http-500", "oversized", "non-json", "redirect"],
)
async def test_http_tool_failures_are_tool_errors(registry, endpoint, tool, expected):
    """Timeouts, errors, huge or non-JSON answers and redirects become tool errors."""
    result = await registry.run(call(tool), CTX)
    payload = output(result)
    assert payload["ok"] is False
    assert expected in payload["error"]
    assert len(endpoint.received) == 1  # one signed request, never repeated elsewhere


# Settings


def test_tool_settings_are_read_and_checked_once():
    """RECALL_* and the signing secret come from the environment, checked at start-up."""
    base = {"RELAY_TOKEN_SECRET": "s" * 48, "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime"}
    config = RelayConfig.from_env(
        {
            **base,
            "RECALL_API_KEY": RECALL_KEY,
            "RECALL_REGION": "eu-central-1",
            "RELAY_TOOL_SIGNING_SECRET": SECRET,
        }
    )
    assert (config.recall_api_key, config.recall_region) == (RECALL_KEY, "eu-central-1")
    assert config.tool_signing_secret == SECRET
    assert RECALL_KEY not in repr(config)
    assert SECRET not in repr(config)
    assert RelayConfig.from_env(base).recall_region == "us-west-2"
    with pytest.raises(ConfigError) as raised:
        RelayConfig.from_env(
            {
                **base,
                "RECALL_REGION": "mars-1",
                "RELAY_TOOL_SIGNING_SECRET": "hunter2",
                "RECALL_API_BASE": "file:///etc",
            }
        )
    assert [p.split()[0] for p in raised.value.problems] == [
        "RECALL_REGION:",
        "RECALL_API_BASE",
        "RELAY_TOOL_SIGNING_SECRET",
    ]
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("retry_after", "attempt", "waited", "expected"),
    [
        ("2", 1, 0.0, 2.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1, 0.0, 0.0),
        ("30", 1, 0.0, None),
        ("1", 3, 0.0, None),
        ("4", 2, 4.5, None),
    ],
    ids=["seconds", "past-http-date", "too-long", "attempts-spent", "total-wait-spent"],
)
def test_tool_retry_plan(retry_after, attempt, waited, expected):
    """The shared Recall rules, with the tools' tight bounds: wait as asked or give up."""
    plan = plan_retry(
        TOOL_RETRY_POLICY,
        attempt=attempt,
        waited=waited,
        retry_after=retry_after,
        now=datetime.now(UTC),
    )
    assert plan.delay == expected
    assert (plan.why == "") is (expected is not None)


async def test_generated_alphanumeric_secret_verifies():
    """A bare 32-character alphanumeric secret (what Secrets Manager generates) works as is."""
    secret = "Gq7Zk2Vb9Xr4Lm8Np3Ts6Wy1Hc5Jd0Fa"
    server = ToolEndpoint(secret)
    server.start()
    registry = build_registry(
        agent_tools({"name": "lookup", "description": "x", "url": server.url("/good")}),
        signing_secret=secret,
    )
    try:
        result = await registry.run(call("lookup", {"q": 1}), CTX)
    finally:
        await registry.aclose()
        server.close()
    assert output(result) == {"ok": True, "result": {"echo": {"q": 1}}}
    assert server.received[0].verified is not None
