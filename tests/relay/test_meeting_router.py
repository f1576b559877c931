"""Meeting events reach the relay that holds their session, over real sockets and moto.

Two in-process relays, each with its own public and internal port, share one table on
moto's server. A stand-in for the session side of meeting events (``MeetingSessions``)
takes an event when a live session of its subject is on that relay, as
``MeetingEndpoint.deliver`` will.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import boto3
import pytest

from relay.server import Relay
from storage import owners
from tests.deadlines import eventually_async
from tests.relay.conftest import (
    FakeUpstream,
    StartRelay,
    eventually,
    mint,
    open_client,
    recv_until,
)


class MeetingSessions:
    """Stand-in session side: records the events live sessions of one relay took."""

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.taken: defaultdict[str, list[int]] = defaultdict(list)

    def __call__(self, session_id: str, payload: bytes) -> bool:
        assert self.relay is not None
        if any(s.claims.sub == session_id and not s.finished for s in self.relay.sessions):
            self.taken[session_id].append(json.loads(payload)["n"])
            return True
        return False


def event(n: int) -> bytes:
    """One Recall-like real-time message, numbered."""
    return json.dumps({"event": "participant_events.join", "n": n}).encode()


@pytest.fixture
def routed_relay(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    dynamodb_endpoint: str,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
):
    """Factory: a started relay on the shared table, with its stand-in session side."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)

    async def start(**overrides) -> tuple[Relay, MeetingSessions]:
        sessions = MeetingSessions()
        relay = await start_relay(
            fake_upstream.url, meeting_delivery=sessions, table_name=table_name, **overrides
        )
        sessions.relay = relay
        return relay, sessions

    return start


def recorded_owner(endpoint: str, table: str, session_id: str) -> str | None:
    """The owner address the table records for ``session_id``."""
    table_resource = boto3.resource("dynamodb", endpoint_url=endpoint).Table(table)
    item = table_resource.get_item(Key=owners.owner_key(session_id), ConsistentRead=True)
    address = item.get("Item", {}).get("address")
    return address if isinstance(address, str) else None


async def owner_is(relay: Relay, endpoint: str, table: str, session_id: str) -> None:
    """Wait until the table names ``relay`` as the owner of ``session_id``."""
    address = relay.meetings.registry.address
    assert address is not None
    await eventually_async(
        lambda: asyncio.to_thread(recorded_owner, endpoint, table, session_id), address
    )


async def until_closed(ws) -> None:
    """Read until the relay closes the connection."""
    async for _ in ws:
        pass


async def test_events_follow_the_session_from_one_relay_to_another(
    routed_relay, dynamodb_endpoint: str, table_name: str
) -> None:
    """Events handed to relay A reach the session on B in order; after the session moves to
    A (B drains, the page reconnects to A), events handed to B reach it on A."""
    relay_a, on_a = await routed_relay()
    relay_b, on_b = await routed_relay(handover_seconds=0.2)
    token = mint("meeting-1")
    async with open_client(relay_b, token) as ws:
        await recv_until(ws, "session.updated")
        await owner_is(relay_b, dynamodb_endpoint, table_name, "meeting-1")

        for n in range(30):
            relay_a.meetings.router.deliver("meeting-1", event(n))
        await eventually(lambda: len(on_b.taken["meeting-1"]) == 30)
        assert on_b.taken["meeting-1"] == list(range(30))
        assert not on_a.taken
        # Paced, as a meeting sends them: the owner found once serves the next events.
        for n in range(100, 105):
            relay_a.meetings.router.deliver("meeting-1", event(n))
            await eventually(lambda: on_b.taken["meeting-1"][-1] == n)  # noqa: B023
        assert relay_a.meetings.router.stats().lookups == 1

        # B leaves: the session is handed over (1001), the page reconnects, lands on A.
        drain = asyncio.create_task(relay_b.drain(2.0))
        await until_closed(ws)
        assert ws.close_code == 1001
    async with open_client(relay_a, token) as ws:
        await recv_until(ws, "session.updated")
        # Recall's socket is still on B, and B still routes (it is draining, not gone).
        for n in range(30, 60):
            relay_b.meetings.router.deliver("meeting-1", event(n))
        await eventually(lambda: len(on_a.taken["meeting-1"]) == 30)
        assert on_a.taken["meeting-1"] == list(range(30, 60))
        await owner_is(relay_a, dynamodb_endpoint, table_name, "meeting-1")
    await drain
    assert on_b.taken["meeting-1"] == [*range(30), *range(100, 105)]  # nothing twice or lost
    assert relay_b.meetings.router.stats().forwarded == 30
    assert relay_a.meetings.router.stats().forwarded == 35


async def test_events_before_the_session_are_delivered_once_it_starts(
    routed_relay, dynamodb_endpoint: str, table_name: str
) -> None:
    """Events that arrive before the page's session starts wait (bounded), then reach it
    in order, whether the session starts on another relay or on this one."""
    relay_a, on_a = await routed_relay()
    relay_b, on_b = await routed_relay()
    for n in range(10):
        relay_a.meetings.router.deliver("early-remote", event(n))
        relay_a.meetings.router.deliver("early-local", event(n))
    assert relay_a.meetings.router.waiting_events == 20

    async with (
        open_client(relay_b, mint("early-remote")) as remote,
        open_client(relay_a, mint("early-local")) as local,
    ):
        await recv_until(remote, "session.updated")
        await recv_until(local, "session.updated")
        await eventually(lambda: len(on_b.taken["early-remote"]) == 10)
        await eventually(lambda: len(on_a.taken["early-local"]) == 10)
    assert on_b.taken["early-remote"] == list(range(10))
    assert on_a.taken["early-local"] == list(range(10))
    assert relay_a.meetings.router.waiting_events == 0


async def test_a_relay_alone_delivers_locally(routed_relay) -> None:
    """With one relay, events for its own session are taken at once, never forwarded."""
    relay, on_relay = await routed_relay()
    async with open_client(relay, mint("solo")) as ws:
        await recv_until(ws, "session.updated")
        for n in range(5):
            relay.meetings.router.deliver("solo", event(n))
        assert on_relay.taken["solo"] == list(range(5))
    assert relay.meetings.router.stats().forwarded == 0


async def test_owner_item_is_released_when_the_session_ends(
    routed_relay, dynamodb_endpoint: str, table_name: str
) -> None:
    """A session's end removes its owner item, so nobody forwards to a task without it."""
    relay, _ = await routed_relay()
    async with open_client(relay, mint("ends")) as ws:
        await recv_until(ws, "session.updated")
        await owner_is(relay, dynamodb_endpoint, table_name, "ends")
    await eventually_async(
        lambda: asyncio.to_thread(recorded_owner, dynamodb_endpoint, table_name, "ends"), None
    )


async def test_unreachable_owner_is_retried_with_backoff_then_dropped(
    routed_relay, dynamodb_endpoint: str, table_name: str, relay_logs: list[str]
) -> None:
    """A stale owner item naming a dead task: the router retries with growing delays, then
    drops the events after the bound and says so; nothing waits forever."""
    relay, _ = await routed_relay(meeting_wait_seconds=1.0)
    stale = owners.SessionOwner("ghost", "127.0.0.1:9", "dead-task", 1)
    boto3.resource("dynamodb", endpoint_url=dynamodb_endpoint).Table(table_name).put_item(
        **owners.claim_request(stale, expires_at=2**31)
    )
    for n in range(5):
        relay.meetings.router.deliver("ghost", event(n))
    await eventually(lambda: relay.meetings.router.waiting_events == 0, within=10)
    stats = relay.meetings.router.stats()
    assert stats.expired == 5
    assert stats.forwarded == 0
    # Backoff, not a hot loop: a handful of attempts within the one-second bound.
    assert 2 <= stats.failed_attempts <= 25
    assert any("meeting events dropped" in line for line in relay_logs)
    assert relay.metrics.counters["MeetingEventsDropped"] == 5


async def test_events_for_a_session_that_never_comes_are_dropped_after_the_bound(
    routed_relay, relay_logs: list[str]
) -> None:
    """Events whose session does not start within the bound are dropped and counted; a
    session starting later gets only what arrived after."""
    relay, on_relay = await routed_relay(meeting_wait_seconds=0.3)
    for n in range(4):
        relay.meetings.router.deliver("late", event(n))
    await eventually(lambda: relay.meetings.router.waiting_events == 0, within=10)
    assert relay.meetings.router.stats().expired == 4
    async with open_client(relay, mint("late")) as ws:
        await recv_until(ws, "session.updated")
        relay.meetings.router.deliver("late", event(4))
        assert on_relay.taken["late"] == [4]
    assert any("meeting events dropped" in line for line in relay_logs)
