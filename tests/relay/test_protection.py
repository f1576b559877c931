"""ECS scale-in protection: bounded, follows live sessions; against a fake ECS agent over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from relay.protection import MAX_PROTECT_MINUTES, TaskProtection
from tests.relay.conftest import eventually, mint, open_client, recv_until


@dataclass
class FakeAgent:
    """A local stand-in for the ECS agent's task-protection endpoint."""

    uri: str = ""
    calls: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
async def ecs_agent() -> AsyncIterator[FakeAgent]:
    agent = FakeAgent()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = json.loads(await reader.readexactly(length)) if length else {}
        method, path, _ = request_line.split(" ")
        agent.calls.append((method, path, body))
        writer.write(f"HTTP/1.1 {agent.status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    agent.uri = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/task-1"
    try:
        yield agent
    finally:
        server.close()
        await server.wait_closed()


async def test_protection_on_with_sessions_and_off_after(ecs_agent: FakeAgent) -> None:
    """The first session turns protection on, the last one ending turns it off."""
    protection = TaskProtection(ecs_agent.uri, protect_minutes=10)
    task = asyncio.get_running_loop().create_task(protection.run())
    try:
        await eventually(lambda: protection.confirmed is False)  # cleared at start-up
        protection.sessions_changed(1)
        protection.sessions_changed(2)
        await eventually(lambda: protection.confirmed is True)
        protection.sessions_changed(1)
        protection.sessions_changed(0)
        await eventually(lambda: protection.confirmed is False)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    bodies = [body for _, _, body in ecs_agent.calls]
    assert all(path == "/api/task-1/task-protection/v1/state" for _, path, _ in ecs_agent.calls)
    assert all(method == "PUT" for method, _, _ in ecs_agent.calls)
    assert bodies == [
        {"ProtectionEnabled": False},
        {"ProtectionEnabled": True, "ExpiresInMinutes": 10},
        {"ProtectionEnabled": False},
    ]


async def test_protection_is_granted_once_per_busy_period_never_renewed(
    ecs_agent: FakeAgent,
) -> None:
    """However long calls go on, the task asks once: a deploy waits minutes, not hours."""
    protection = TaskProtection(ecs_agent.uri, protect_minutes=5)
    task = asyncio.get_running_loop().create_task(protection.run())
    try:
        await eventually(lambda: protection.confirmed is False)
        for count in (1, 2, 3, 2, 4, 1):  # sessions come and go, never all at once
            protection.sessions_changed(count)
            await eventually(lambda: protection.confirmed is True)
        # A second, later busy period gets its own bounded grant.
        protection.sessions_changed(0)
        await eventually(lambda: protection.confirmed is False)
        protection.sessions_changed(1)
        await eventually(lambda: protection.grants == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    grants = [body for _, _, body in ecs_agent.calls if body["ProtectionEnabled"]]
    assert grants == [{"ProtectionEnabled": True, "ExpiresInMinutes": 5}] * 2
    assert all(int(str(b["ExpiresInMinutes"])) <= MAX_PROTECT_MINUTES for b in grants)


async def test_a_leaving_task_clears_protection_for_good(ecs_agent: FakeAgent) -> None:
    """Once the task is leaving, protection is cleared and new sessions do not bring it back."""
    protection = TaskProtection(ecs_agent.uri)
    protection.sessions_changed(3)
    task = asyncio.get_running_loop().create_task(protection.run())
    try:
        await eventually(lambda: protection.confirmed is True)
        protection.release()
        await eventually(lambda: protection.confirmed is False)
        protection.sessions_changed(0)
        protection.sessions_changed(1)  # a late admit during the hand-over
        assert protection.wanted is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert protection.confirmed is False
    assert [body["ProtectionEnabled"] for _, _, body in ecs_agent.calls][-1] is False
    assert protection.grants == 1


@pytest.mark.parametrize("minutes", [0, -1, MAX_PROTECT_MINUTES + 1, 120], ids=str)
def test_unbounded_protection_is_refused(minutes: int) -> None:
    """Nobody can configure hours of protection by mistake: the constructor refuses it."""
    with pytest.raises(ValueError, match="protect_minutes"):
        TaskProtection("http://127.0.0.1:1/api/task", protect_minutes=minutes)


async def test_agent_errors_are_retried_not_raised(ecs_agent: FakeAgent) -> None:
    """A failing agent is retried; sessions never see the error."""
    ecs_agent.status = 500
    protection = TaskProtection(ecs_agent.uri, retry_seconds=0.05)
    protection.sessions_changed(1)
    task = asyncio.get_running_loop().create_task(protection.run())
    try:
        await eventually(lambda: len(ecs_agent.calls) >= 2)
        ecs_agent.status = 200
        await eventually(lambda: protection.confirmed is True)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_ecs_agent_uri_nothing_happens() -> None:
    """Locally (no ECS_AGENT_URI) protection is a no-op that returns at once."""
    protection = TaskProtection(None)
    protection.sessions_changed(1)
    async with asyncio.timeout(1):
        await protection.run()
    assert protection.confirmed is None


async def test_relay_protects_the_task_while_a_session_is_live(
    ecs_agent: FakeAgent, start_relay, fake_upstream
) -> None:
    """With ECS_AGENT_URI set, a live session turns protection on; its end turns it off."""
    relay = await start_relay(fake_upstream.url, ecs_agent_uri=ecs_agent.uri)
    async with open_client(relay, mint()) as ws:
        await recv_until(ws, "session.updated")
        await eventually(lambda: relay.protection.confirmed is True)
    await eventually(lambda: relay.protection.confirmed is False and not relay.sessions)
    enabled = [body["ProtectionEnabled"] for _, _, body in ecs_agent.calls]
    assert enabled[-2:] == [True, False]
    (grant,) = [body for _, _, body in ecs_agent.calls if body["ProtectionEnabled"]]
    assert 1 <= int(str(grant["ExpiresInMinutes"])) <= MAX_PROTECT_MINUTES  # the relay's default
