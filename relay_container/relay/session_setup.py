"""What a session runs with: its bot, persona, tools and greeting, resolved when it starts.

(:func:`start_tools` then builds the session's tool runner from it.)

The operator's ``agent.yaml`` (``AgentConfig``) and relay tools (``ToolRegistry``) are the
process's; a bot created with ``voicebot bot create --instructions/--agent`` also has an
overlay, stored under the session the token names (``relay.bot_binding``), never taken
from client input. :meth:`SessionSetups.resolve` reads it (while the model connects),
merges it within the fields the operator lets a bot override (``relay.overlay``), and
returns the ``session.update`` to send, the tools the session runs, its tool-call tracker
(seeded with the call ids already run, so a resumed session never runs one twice) and the
greeting. A table that cannot be read, or an overlay the operator's config no longer
allows, costs the persona, not the meeting: the session runs the operator's agent and the
problem is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from relay.agent import AgentConfig
from relay.bill import Bill
from relay.bot_binding import BindingStore, BotBinding
from relay.config import RelayConfig
from relay.errors import ConfigError, UpstreamError
from relay.meeting import MeetingPolicy
from relay.memory import (
    RECALL_MEETINGS_TOOL,
    TOOL_NAME,
    memory_instructions,
    recall_meetings_output,
)
from relay.overlay import merge
from relay.tool_calls import ToolCallTracker
from relay.tool_calls import seed_events as tool_seed_events
from relay.tool_runner import ToolRunner
from relay.tools.builtins import Builtins, ToolContext
from relay.tools.registry import SessionTool, ToolRegistry, build_registry
from relay.turn_gate import TurnGate

logger = logging.getLogger(__name__)

#: A session's bill when nothing sets one (no limits).
NO_BILL: Final = Bill(max_minutes=None, max_tokens=None, max_cost_usd=None)
#: Earlier meetings put into a session's instructions, at most (bounded in size too).
MEMORY_MEETINGS: Final = 5
#: Earlier meetings a ``recall_meetings`` call searches (newest first).
RECALL_MEETINGS_SEARCHED: Final = 50


@dataclass(frozen=True, slots=True)
class SessionSetup:
    """One session's agent, as resolved at its start."""

    agent_update: bytes
    #: The Recall bot of the session (None: not started by ``voicebot bot create``).
    bot_id: str | None
    #: The relay tools this session runs (None: none).
    registry: ToolRegistry | None
    tracker: ToolCallTracker | None
    greeting: str | None
    #: Who decides when the agent answers (``turn_taking``): None, the model itself.
    gate: TurnGate | None = None
    #: The session's bill (limits, prices), the operator's with the bot's own limits.
    bill: Bill = NO_BILL
    #: What the session does with its meeting's events (``chat``, the agent's names).
    meeting: MeetingPolicy = field(default_factory=MeetingPolicy)


class SessionSetups:
    """Resolves each session's setup from the operator's agent, tools and stored bindings."""

    @classmethod
    def for_config(cls, agent: AgentConfig, config: RelayConfig) -> SessionSetups:
        """The process's setups: ``agent``'s tools built with the relay's settings, and the
        bots' overlays read from the table when there is one."""
        registry = build_registry(
            agent.tools,
            slow_tools=agent.slow_tools,
            recall_api_key=config.recall_api_key,
            recall_region=config.recall_region,
            recall_api_base=config.recall_api_base,
            signing_secret=config.tool_signing_secret,
            table_name=config.table_name,
            retention_days=config.record_retention_days,
        )
        return cls(agent, registry, BindingStore(config.table_name) if config.table_name else None)

    def __init__(
        self,
        agent: AgentConfig,
        registry: ToolRegistry | None = None,
        bindings: BindingStore | None = None,
    ) -> None:
        self.agent = agent
        self.registry = registry if registry is not None and registry.names else None
        self.bindings = bindings
        #: The operator's own ``session.update`` (a session's until its setup is resolved).
        self.default_update = agent.session_update()

    def operator(self, *, executed: Iterable[str] = ()) -> SessionSetup:
        """The operator's agent and every relay tool (no bot persona)."""
        return _setup(self.agent, self.default_update, None, self.registry, executed)

    async def _binding(self, session_id: str) -> BotBinding | None:
        if self.bindings is None:
            return None
        try:
            return await self.bindings.load_overlay(session_id)
        except UpstreamError as error:
            logger.warning(
                "the session's bot could not be read; the operator's agent runs",
                extra={"sub": session_id, "error": str(error)},
            )
            return None

    async def _memory_key(self, session_id: str) -> str | None:
        if self.bindings is None:
            return None
        try:
            return await self.bindings.memory_key(session_id)
        except UpstreamError as error:
            logger.warning(
                "the session's memory could not be read; it starts without",
                extra={"sub": session_id, "error": str(error)},
            )
            return None

    async def _with_memory(
        self, agent: AgentConfig, registry: ToolRegistry | None, memory_key: str
    ) -> tuple[bytes, ToolRegistry | None]:
        """The session's update with the newest minutes under ``memory_key`` in its
        instructions, and its tools with ``recall_meetings`` to look further back."""
        assert self.bindings is not None
        bindings = self.bindings
        try:
            entries = await bindings.memories(memory_key, MEMORY_MEETINGS)
        except UpstreamError as error:
            logger.warning(
                "earlier meetings could not be read",
                extra={"memory_key": memory_key, "error": str(error)},
            )
            entries = []
        session = agent.session()
        recalled = memory_instructions(entries, memory_key)
        if recalled:
            session["instructions"] = f"{session['instructions']}\n\n{recalled}"
        session["tools"] = [*session.get("tools", []), dict(RECALL_MEETINGS_TOOL)]

        async def recall(arguments: str) -> str:
            try:
                found = await bindings.memories(memory_key, RECALL_MEETINGS_SEARCHED)
            except UpstreamError:
                return json.dumps({"error": "the minutes of earlier meetings cannot be read now"})
            return recall_meetings_output(found, arguments)

        tools = registry or ToolRegistry([], builtins=Builtins())
        tools = tools.with_tool(SessionTool(TOOL_NAME, RECALL_MEETINGS_TOOL, recall))
        update = json.dumps({"type": "session.update", "session": session}, separators=(",", ":"))
        return update.encode(), tools

    def guard(self) -> ToolCallTracker | None:
        """A tracker over every relay tool, guarding a session's client events from its
        first byte (before its own setup is resolved)."""
        if self.registry is None:
            return None
        return ToolCallTracker(self.registry.names, self.registry.declarations())

    async def resolve(self, session_id: str, *, executed: Iterable[str] = ()) -> SessionSetup:
        """The setup of the session ``session_id`` (the token's subject)."""
        agent, registry, bot_id = self.agent, self.registry, None
        # Both items are read at once: a session's start waits for one table round trip.
        binding, memory_key = await asyncio.gather(
            self._binding(session_id), self._memory_key(session_id)
        )
        if binding is not None:
            bot_id = binding.bot_id
            try:
                agent = merge(self.agent, binding.overlay or None)
            except ConfigError as error:
                logger.warning(
                    "the bot's persona is not allowed by agent.yaml; the operator's agent runs",
                    extra={"sub": session_id, "bot_id": bot_id, "error": str(error)},
                )
            chosen = binding.overlay.get("tools") if binding.overlay else None
            if registry is not None and isinstance(chosen, list):
                registry = registry.only([name for name in chosen if isinstance(name, str)])
        agent_update = agent.session_update()
        if memory_key is not None:
            agent_update, registry = await self._with_memory(agent, registry, memory_key)
        return _setup(agent, agent_update, bot_id, registry, executed)


def start_tools(
    setup: SessionSetup,
    calls: Sequence[Mapping[str, Any]],
    *,
    session_id: str,
    send_upstream: Callable[[bytes], Awaitable[None]],
    record: Callable[..., None],
) -> tuple[ToolRunner | None, list[bytes]]:
    """The session's tool runner (None without relay tools), and the events that replay
    its finished tool calls (a resume); ``record(call_id=, name=, arguments=, output=)``
    stores a call when it starts and again when it ends."""
    if setup.registry is None or setup.tracker is None:
        return None, []
    runner = ToolRunner(
        setup.registry,
        setup.tracker,
        ToolContext(session_id=session_id, bot_id=setup.bot_id),
        send_upstream=send_upstream,
        on_start=lambda call: record(
            call_id=call.call_id, name=call.name, arguments=call.arguments
        ),
        on_result=lambda call, result: record(
            call_id=call.call_id, name=call.name, arguments=call.arguments, output=result.output
        ),
    )
    seeds: list[bytes] = []
    for call in calls:
        output = call.get("output")
        if isinstance(output, str):
            seeds += tool_seed_events(
                str(call["call_id"]), str(call.get("name")), str(call.get("arguments")), output
            )
    return runner, seeds


def _setup(
    agent: AgentConfig,
    agent_update: bytes,
    bot_id: str | None,
    registry: ToolRegistry | None,
    executed: Iterable[str],
) -> SessionSetup:
    """The setup of a session running ``agent`` with ``registry``'s tools (none if empty)."""
    if registry is not None and not registry.names:
        registry = None
    tracker = (
        ToolCallTracker(registry.names, registry.declarations(), executed=executed)
        if registry is not None
        else None
    )
    meeting = MeetingPolicy(chat=agent.chat.mode, wake_phrases=agent.turn_taking.wake_phrases)
    return SessionSetup(
        agent_update,
        bot_id,
        registry,
        tracker,
        agent.greeting,
        gate_of(agent),
        agent.bill,
        meeting,
    )


def gate_of(agent: AgentConfig) -> TurnGate | None:
    """A session's turn gate under ``agent.turn_taking`` (None: the model answers every turn)."""
    taking = agent.turn_taking
    if taking.mode == "always":
        return None
    if taking.mode == "manual":
        return TurnGate(wake_phrases=(), follow_ups=False, hints=False)
    return TurnGate(wake_phrases=taking.wake_phrases, follow_ups=taking.follow_ups)
