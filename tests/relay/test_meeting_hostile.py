"""Hostile input on the meeting events route: forged, replayed, malformed, oversized, floods.

The relay on a port, a fake GA model, a fake Recall on ``/recall/events/``. Whatever comes
in, the session keeps working: a spoken turn is still heard and answered afterwards.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cli import recall_events
from relay.meeting import ITEM_BURST
from relay.meeting_events import MAX_EVENT_BYTES, MeetingEventError, parse_meeting_event
from relay.meeting_socket import MAX_DROPPED
from relay.server import Relay
from tests.conftest import TIMEOUT
from tests.relay.conftest import FakeUpstream, StartRelay, eventually, mint, open_client, recv_until
from tests.relay.test_meeting import (
    BOT_NAME,
    RECALL_SECRET,
    SESSION,
    FakeRecall,
    agent,
    recall_socket,
    say,
)
from tests.relay.test_turn_taking import meeting_model


def join(ident: int, name: str, session_id: str = SESSION) -> str:
    return recall_events.event(
        "join", recall_events.participant(ident, name), session_id=session_id, bot_name=BOT_NAME
    )


async def started(start_relay: StartRelay, upstream: FakeUpstream, **kw: Any) -> Relay:
    upstream.script = meeting_model
    return await start_relay(
        upstream.url, agent=agent("addressed"), recall_webhook_secret=RECALL_SECRET, **kw
    )


def roster(relay: Relay, sub: str = SESSION) -> list[str]:
    return sorted(
        p.name or ""
        for s in relay.sessions
        if s.claims.sub == sub
        for p in s.core.meeting.roster.values()
    )


# Who may open the route


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature at all
        {**recall_events.signed_upgrade_headers(RECALL_SECRET), "webhook-signature": "v1,AAAA"},
        recall_events.signed_upgrade_headers(
            "whsec_" + "b3RoZXItd29ya3NwYWNlLXNlY3JldC0zMmJ5dGVz"
        ),  # another workspace's secret
        recall_events.signed_upgrade_headers(RECALL_SECRET, now=0),  # long ago
    ],
    ids=["unsigned", "bad-signature", "other-secret", "stale"],
)
async def test_forged_upgrades_are_refused_with_401(
    start_relay: StartRelay, fake_upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    relay = await started(start_relay, fake_upstream)
    with pytest.raises(InvalidStatus) as refused:
        await recall_socket(relay, headers)
    assert refused.value.response.status_code == 401
    assert relay.metrics.counters["MeetingSocketsRefused"] == 1


async def test_a_replayed_upgrade_is_refused(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    relay = await started(start_relay, fake_upstream)
    headers = recall_events.signed_upgrade_headers(RECALL_SECRET)
    async with await recall_socket(relay, headers):
        pass
    with pytest.raises(InvalidStatus) as refused:
        await recall_socket(relay, headers)
    assert refused.value.response.status_code == 401


async def test_without_the_secret_the_route_is_closed(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(fake_upstream.url)
    with pytest.raises(InvalidStatus) as refused:
        await recall_socket(relay)
    assert refused.value.response.status_code == 403


# What a connection may send


async def test_events_for_a_session_the_connection_does_not_feed_are_refused(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    relay = await started(start_relay, fake_upstream)
    async with (
        open_client(relay, mint(SESSION)) as mine,
        open_client(relay, mint("victim")) as other,
    ):
        await recv_until(mine, "session.updated")
        await recv_until(other, "session.updated")
        async with await recall_socket(relay) as ws:
            await FakeRecall(ws, relay).send("join", 1)  # pins this connection to SESSION
            await ws.send(join(7, "Mallory", session_id="victim"))
            await eventually(lambda: relay.metrics.counters["MeetingEventsRefused"] == 1)
            await FakeRecall(ws, relay).send("join", 2)  # and it goes on
        assert roster(relay) == ["Grace", "Linus"]
        assert roster(relay, "victim") == []
    # Delivery itself checks too: refused and counted here, so the router does not send
    # it on to another task either.
    refused = relay.metrics.counters["MeetingEventsRefused"]
    assert relay.meetings.deliver("victim", join(7, "Mallory").encode())
    assert relay.metrics.counters["MeetingEventsRefused"] == refused + 1


async def test_malformed_and_oversized_events_are_refused_and_the_connection_goes_on(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    relay = await started(start_relay, fake_upstream)
    bad = [
        "not json",
        json.dumps({"event": "participant_events.join"}),  # no data
        json.dumps({"event": "bot.status_change", "data": {}}),  # not a meeting event
        json.dumps({"event": "participant_events.join", "data": {"data": {}, "bot": {}}}),
        json.dumps([1, 2, 3]),
        "[" * 100_000 + "]" * 100_000,  # deep nesting, and larger than an event may be
        join(1, "x" * (MAX_EVENT_BYTES + 10)),  # oversized
    ]
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        async with await recall_socket(relay) as ws:
            for message in bad:
                await ws.send(message)
            await eventually(lambda: relay.metrics.counters["MeetingEventsRefused"] == len(bad))
            recall = FakeRecall(ws, relay)
            await recall.send("join", 1)
            await recall.send("join", 2)
            await recall.send("speech_on", 2)
            assert await say(client, "Ava, still there?")


async def test_a_frame_beyond_the_bound_cuts_only_that_connection(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    relay = await started(start_relay, fake_upstream)
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        ws = await connect(
            relay.url.replace("/v1/realtime", "/recall/events/"),
            additional_headers=recall_events.signed_upgrade_headers(RECALL_SECRET),
            open_timeout=TIMEOUT,
            compression=None,
            max_size=None,
        )
        await ws.send("x" * (2 * 1024 * 1024))
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009
        async with await recall_socket(relay) as again:
            recall = FakeRecall(again, relay)
            await recall.send("join", 3)
            await recall.send("speech_on", 3)
            assert await say(client, "Ava, are you with us?")


async def test_an_event_flood_is_bounded_and_the_session_keeps_working(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    relay = await started(start_relay, fake_upstream)
    flood = 3 * MAX_DROPPED
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        ws = await recall_socket(relay)
        session = next(iter(relay.sessions))
        try:
            for i in range(flood):
                await ws.send(join(1000 + i, f"bot-{i}"))
        except ConnectionClosed:
            pass
        # The flood is cut (1008) once it has dropped MAX_DROPPED messages over the rate.
        await eventually(lambda: not relay.meetings.sockets, within=3 * TIMEOUT)
        assert relay.metrics.counters["MeetingEventsDropped"] >= MAX_DROPPED
        # The model heard a bounded number of items, not thousands of joins.
        meeting = session.core.meeting
        assert meeting.items_sent <= ITEM_BURST + 10
        created = [m for m in fake_upstream.received if "conversation.item.create" in m]
        assert len(created) <= ITEM_BURST + 10
        # And the session still answers when addressed (one of the "people" is addressed).
        async with await recall_socket(relay) as calm:
            await FakeRecall(calm, relay).send("speech_on", 1)
        assert await say(client, "Ava, what happened?")


# The parser, fuzzed (bounded)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def envelope(name: object, participant: object, data: object, metadata: object) -> str:
    return json.dumps(
        {
            "event": name,
            "data": {
                "data": {"participant": participant, "timestamp": {"relative": 1.0}, "data": data},
                "bot": {"id": "b", "metadata": metadata},
            },
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["participant_events.join", "participant_events.chat_message", "x"])
    | json_values,
    participant=json_values,
    data=json_values,
    metadata=json_values,
)
def test_the_parser_takes_any_shape_and_only_refuses_cleanly(
    name: object, participant: object, data: object, metadata: object
) -> None:
    try:
        event = parse_meeting_event(envelope(name, participant, data, metadata))
    except MeetingEventError as error:
        reason = str(error)
        event = None
    if event is None:
        assert reason  # a refusal always says why
        return
    assert event.session_id
    assert event.participant.id
    assert len(event.text) <= 4096


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_the_parser_refuses_arbitrary_bytes_cleanly(raw: bytes) -> None:
    with contextlib.suppress(MeetingEventError):
        parse_meeting_event(raw)


async def test_the_stack_placeholder_closes_the_route_and_a_rotation_pair_opens_it(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    placeholder = await start_relay(
        fake_upstream.url, recall_webhook_secret="UNSET-put-the-Recall-whsec-signing-secret-here"
    )
    with pytest.raises(InvalidStatus) as refused:
        await recall_socket(placeholder)
    assert refused.value.response.status_code == 403
    old = "whsec_" + "b2xkLXdvcmtzcGFjZS1zZWNyZXQtMzJieXRlcyEh"
    rotating = await start_relay(fake_upstream.url, recall_webhook_secret=f"{old} {RECALL_SECRET}")
    async with await recall_socket(rotating):  # signed with the new secret of the pair
        pass


async def test_events_of_another_bot_than_the_sessions_are_refused(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    relay = await started(start_relay, fake_upstream)
    async with open_client(relay, mint(SESSION)) as client:
        await recv_until(client, "session.updated")
        session = next(iter(relay.sessions))
        session.bot_id = "bot-of-this-session"  # what its stored binding says
        async with await recall_socket(relay) as ws:
            await ws.send(join(1, "Mallory"))  # bot.id "bot-dev": not this session's bot
            await eventually(lambda: relay.metrics.counters["MeetingEventsRefused"] == 1)
        assert roster(relay) == []
