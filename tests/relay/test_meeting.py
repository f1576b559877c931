"""Meeting awareness over real sockets: Recall's real-time events reach the session.

The relay runs on a port in front of a GA fake model (``meeting_model``: each client append
is one finished turn transcribed with the words it carries). A fake Recall opens the
relay's ``/recall/events/`` websocket with a signed upgrade (``cli.recall_events``) and
sends who joins, who speaks and the chat, as Recall does in a real meeting.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from cli import recall_events
from relay.agent import AgentConfig
from relay.record_writer import SessionRecorder
from relay.server import Relay
from tests.conftest import TIMEOUT
from tests.relay.conftest import (
    SENSITIVE,
    FakeUpstream,
    StartRelay,
    eventually,
    mint,
    open_client,
    recv_until,
)
from tests.relay.test_records import FAST_RETRY, read_partition
from tests.relay.test_turn_taking import meeting_model

RECALL_SECRET = "whsec_" + base64.b64encode(b"recall-workspace-secret-32-bytes").decode()
SENSITIVE.add(RECALL_SECRET)
SESSION = "sess-meeting"
BOT_NAME = "Ava"
PEOPLE = {1: "Grace", 2: "Linus", 3: "Ada", 4: "Barbara", 5: "Ken"}
BOT_PARTICIPANT = 99
#: Five people; the agent (Ava) is addressed in turns 1 and 4.
MEETING = [
    (1, "Let's look at the roadmap first."),
    (2, "Ava, what did we decide last week?"),
    (3, "Good. Moving on to hiring."),
    (4, "I think we need two more engineers; Java folks ideally."),
    (5, "Can you write that down, AVA?"),
    (1, "Thanks everyone, that's all."),
]


def agent(mode: str, **extra: Any) -> AgentConfig:
    taking: dict[str, Any] = {"mode": mode}
    if mode == "addressed":
        taking["wake_phrases"] = ["Ava"]
    return AgentConfig.model_validate({"turn_taking": taking, **extra})


class FakeRecall:
    """Recall's side of a real-time websocket endpoint, for one bot."""

    def __init__(self, ws: ClientConnection, relay: Relay, session_id: str = SESSION) -> None:
        self.ws = ws
        self.relay = relay
        self.session_id = session_id

    async def send(self, kind: str, ident: int, **kw: Any) -> None:
        name = BOT_NAME if ident == BOT_PARTICIPANT else PEOPLE.get(ident)
        message = recall_events.event(
            kind,
            recall_events.participant(ident, name),
            session_id=self.session_id,
            bot_name=BOT_NAME,
            **kw,
        )
        before = self.events_seen()
        await self.ws.send(message)
        # Delivered once the session's meeting counted it (events arrive in order).
        await eventually(lambda: self.events_seen() > before, within=TIMEOUT)

    def events_seen(self) -> int:
        return sum(s.core.meeting.events for s in self.relay.sessions if s.claims.sub == SESSION)


async def recall_socket(relay: Relay, headers: dict[str, str] | None = None) -> ClientConnection:
    url = relay.url.replace("/v1/realtime", "/recall/events/")
    signed = recall_events.signed_upgrade_headers(RECALL_SECRET) if headers is None else headers
    return await connect(url, additional_headers=signed, open_timeout=TIMEOUT, compression=None)


async def say(client: ClientConnection, words: str) -> bool:
    """One spoken turn (the fake model hears ``words``); whether the agent answered it."""
    audio = base64.b64encode(words.encode()).decode()
    await client.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
    await recv_until(client, "conversation.item.input_audio_transcription.completed")
    await client.send(json.dumps({"type": "input_audio_buffer.clear"}))
    seen = await recv_until(client, "input_audio_buffer.cleared")
    return any(e["type"] == "response.done" for e in seen)


async def hold_meeting(relay: Relay, people: dict[int, str] = PEOPLE) -> list[int]:
    """Everyone joins (the bot too), then each scripted turn is spoken between its
    speaker's speech_on and speech_off; the indexes of the turns the agent answered."""
    answered: list[int] = []
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        async with await recall_socket(relay) as ws:
            recall = FakeRecall(ws, relay)
            await recall.send("join", BOT_PARTICIPANT)
            for ident in people:
                await recall.send("join", ident)
            for index, (ident, words) in enumerate(MEETING):
                if ident not in people:
                    ident = next(iter(people))
                await recall.send("speech_on", ident)
                if await say(client, words):
                    answered.append(index)
                await recall.send("speech_off", ident)
    return answered


def model_items(upstream: FakeUpstream) -> list[tuple[str, str]]:
    """(role, text) of every conversation item the relay created at the model."""
    found = []
    for raw in upstream.received:
        event = json.loads(raw)
        if event["type"] == "conversation.item.create":
            item = event["item"]
            found.append((item["role"], item["content"][0]["text"]))
    return found


@pytest.fixture
async def recorder(dynamodb_endpoint: str, table_name: str) -> AsyncIterator[SessionRecorder]:
    rec = SessionRecorder(
        table_name,
        region="us-east-1",
        endpoint_url=dynamodb_endpoint,
        retry=FAST_RETRY,
        usage_interval=0.0,
    )
    rec.start()
    try:
        yield rec
    finally:
        await rec.aclose(timeout=TIMEOUT)


# When the agent speaks, with speakers from the events route


async def test_addressed_five_person_meeting_answers_exactly_twice_naming_speakers(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url, agent=agent("addressed"), recall_webhook_secret=RECALL_SECRET
    )
    assert await hold_meeting(relay) == [1, 4]
    sent = [json.loads(m) for m in fake_upstream.received]
    assert len([e for e in sent if e["type"] == "response.create"]) == 2
    items = model_items(fake_upstream)
    # The bot itself is not in the roster; five people joined.
    assert ("system", "Ken joined the meeting (5 people here).") in items
    assert not any(BOT_NAME in text for _, text in items if "joined" in text)
    # Each turn's speaker is named to the model before the turn's audio.
    order = [e["type"] for e in sent]
    first_audio = order.index("input_audio_buffer.append")
    named = [i for i, e in enumerate(sent) if e.get("item", {}).get("role") == "system"]
    speaking = [sent[i]["item"]["content"][0]["text"] for i in named if i < first_audio]
    assert speaking[-1] == "Grace is speaking."


async def test_always_mode_answers_every_turn_of_the_meeting(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url, agent=agent("always"), recall_webhook_secret=RECALL_SECRET
    )
    assert await hold_meeting(relay) == list(range(len(MEETING)))


async def test_with_one_other_human_every_turn_is_answered_in_addressed_mode(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url, agent=agent("addressed"), recall_webhook_secret=RECALL_SECRET
    )
    assert await hold_meeting(relay, people={3: "Ada"}) == list(range(len(MEETING)))


async def test_an_interrupted_answer_still_truncates(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url, agent=agent("addressed"), recall_webhook_secret=RECALL_SECRET
    )
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        async with await recall_socket(relay) as ws:
            recall = FakeRecall(ws, relay)
            for ident in (1, 2):
                await recall.send("join", ident)
            await recall.send("speech_on", 2)
            assert await say(client, "Ava, summarise please")
            truncate = {
                "type": "conversation.item.truncate",
                "item_id": "asked_x",
                "content_index": 0,
                "audio_end_ms": 20,
            }
            await recall.send("speech_on", 1)  # someone barges in: the page truncates
            await client.send(json.dumps(truncate))
            await eventually(
                lambda: any('"conversation.item.truncate"' in m for m in fake_upstream.received)
            )


# Records and the chat


async def test_speaker_names_reach_the_stored_turns(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    recorder: SessionRecorder,
    dynamodb_endpoint: str,
    table_name: str,
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url,
        recorder=recorder,
        agent=agent("addressed"),
        recall_webhook_secret=RECALL_SECRET,
    )
    await hold_meeting(relay)
    await recorder.flush(TIMEOUT)

    def user_turns() -> list[dict[str, Any]]:
        items = read_partition(dynamodb_endpoint, table_name, SESSION)
        return [i for i in items if i.get("role") == "user"]

    await eventually(lambda: len(user_turns()) == len(MEETING), within=3 * TIMEOUT)
    spoken = [(t.get("speaker"), t["text"]) for t in user_turns()]
    assert spoken == [(PEOPLE[i], words) for i, words in MEETING]


async def test_a_chat_message_reaches_the_model_with_its_sender_and_is_answered(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    recorder: SessionRecorder,
    dynamodb_endpoint: str,
    table_name: str,
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url,
        recorder=recorder,
        agent=agent("addressed"),
        recall_webhook_secret=RECALL_SECRET,
    )
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        async with await recall_socket(relay) as ws:
            recall = FakeRecall(ws, relay)
            for ident in (1, 2, 3):
                await recall.send("join", ident)
            await recall.send("chat_message", 2, text="lunch at noon?")  # not for the agent
            await recall.send("chat_message", 3, text="Ava, can you share the agenda?")
            await recv_until(client, "response.done")
    items = model_items(fake_upstream)
    assert ("user", "Ada (in the chat): Ava, can you share the agenda?") in items
    assert not any("lunch" in text for _, text in items)
    sent = [json.loads(m) for m in fake_upstream.received]
    assert len([e for e in sent if e["type"] == "response.create"]) == 1
    await recorder.flush(TIMEOUT)
    stored = read_partition(dynamodb_endpoint, table_name, SESSION)
    chats = [i for i in stored if i.get("via") == "chat"]
    assert [(c["speaker"], c["text"]) for c in chats] == [("Ada", "Ava, can you share the agenda?")]


async def test_roster_events_before_the_session_opens_are_not_lost(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(
        fake_upstream.url, agent=agent("addressed"), recall_webhook_secret=RECALL_SECRET
    )
    async with await recall_socket(relay) as ws:
        for ident in (1, 2):
            await ws.send(
                recall_events.event(
                    "join",
                    recall_events.participant(ident, PEOPLE[ident]),
                    session_id=SESSION,
                    bot_name=BOT_NAME,
                )
            )
        await eventually(lambda: relay.meetings.router.waiting_events >= 2)
        async with open_client(relay, mint(SESSION)) as client:
            await recv_until(client, "session.updated")
            session = next(iter(relay.sessions))
            assert sorted(p.name or "" for p in session.core.meeting.roster.values()) == [
                "Grace",
                "Linus",
            ]
        await asyncio.sleep(0)
