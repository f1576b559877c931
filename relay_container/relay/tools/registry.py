"""ToolRegistry: the relay's tools for a session, and the one place a tool call is run.

Built once per process from agent.yaml's ``tools`` (``relay.tools.spec``) by
:func:`build_registry`, which checks that every opted-in tool has what it needs (a Recall
key, a table, a signing secret) and reports every problem at once. A per-bot overlay
that picks fewer tools gets :meth:`ToolRegistry.only`.

How the session uses it::

    registry.owns(name)                  # relay-run? (the tracker's ``relay_tools``)
    registry.declarations()              # GA ``session.tools`` entries of relay tools
    result = await registry.run(call, ctx)   # never raises; bounded by the tool's timeout
    tracker.tool_finished(call.call_id, result.output, respond=result.respond)
    registry.slow_instructions(call.name)    # what to say while it runs (or None)

:meth:`ToolRegistry.run` never raises (cancellation aside): bad arguments, a failing
service, a timeout and even a bug become ``{"ok": false, "error": …}``, which goes back
to the model as the call's output so it can tell the participants. Arguments and results
are never logged; one INFO line per call says which tool ran, how long, and whether it
worked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.errors import ConfigError
from relay.recall_retry import region_base_url
from relay.tool_calls import MAX_ARGUMENTS_CHARS, ToolCall
from relay.tools.builtins import Builtins, ToolContext
from relay.tools.errors import ToolFailure
from relay.tools.http_tool import HttpToolRunner
from relay.tools.meeting_exit import MeetingExit
from relay.tools.notes import NoteStore
from relay.tools.recall import RecallBotApi
from relay.tools.spec import BuiltinTool, HttpTool, SlowTools

logger = logging.getLogger(__name__)

#: Longest output handed back to the model; a bigger result becomes an error.
MAX_OUTPUT_CHARS: Final = 64 * 1024
#: Built-ins that need Recall, and those that need the table.
_NEEDS_RECALL: Final = frozenset({"leave_meeting", "send_chat_message"})
_NEEDS_TABLE: Final = frozenset({"take_note", "list_notes"})

RelayTool = BuiltinTool | HttpTool


@dataclass(frozen=True, slots=True)
class SessionTool:
    """A relay-run function that one session adds itself (``recall_meetings`` over its
    memory key): answered by ``answer(arguments JSON) -> output JSON``."""

    name: str
    spec: Mapping[str, Any]
    answer: Callable[[str], Awaitable[str]]
    timeout_seconds: float = 8.0

    def declaration(self) -> dict[str, Any]:
        """The GA ``session.tools`` entry."""
        return dict(self.spec)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call produced, ready for ``ToolCallTracker.tool_finished``."""

    #: The ``function_call_output`` text: ``{"ok": true, ...}`` or ``{"ok": false, "error"}``.
    output: str
    ok: bool
    #: False when the model asked to stay silent (``end_turn_silently``).
    respond: bool = True


class ToolRegistry:
    """The relay-run tools of agent.yaml, with the services that run them."""

    def __init__(
        self,
        tools: Sequence[RelayTool | SessionTool],
        *,
        builtins: Builtins,
        http: HttpToolRunner | None = None,
        slow_tools: SlowTools | None = None,
    ) -> None:
        """Use ``tools`` (relay-run entries only) with these services (see build_registry)."""
        self._tools: dict[str, RelayTool | SessionTool] = {t.name: t for t in tools}
        self._builtins = builtins
        self._http = http
        self.slow_tools = slow_tools or SlowTools()

    # What the session asks

    @property
    def names(self) -> frozenset[str]:
        """Names of the relay-run tools."""
        return frozenset(self._tools)

    def owns(self, name: str) -> bool:
        """True when the relay, not the client, runs function ``name``."""
        return name in self._tools

    def declarations(self) -> list[dict[str, Any]]:
        """The GA ``session.tools`` entries of the relay-run tools."""
        return [tool.declaration() for tool in self._tools.values()]

    def only(self, names: Sequence[str]) -> ToolRegistry:
        """The same services with only the tools in ``names`` (a bot's overlay choice)."""
        chosen = [t for n, t in self._tools.items() if n in set(names)]
        return ToolRegistry(
            chosen, builtins=self._builtins, http=self._http, slow_tools=self.slow_tools
        )

    def with_tool(self, tool: SessionTool) -> ToolRegistry:
        """The same tools and services, plus one of the session's own."""
        return ToolRegistry(
            [*self._tools.values(), tool],
            builtins=self._builtins,
            http=self._http,
            slow_tools=self.slow_tools,
        )

    def slow_instructions(self, name: str) -> str | None:
        """Instructions for an out-of-band response while ``name`` runs, or None."""
        return self.slow_tools.instructions(name)

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        """Run ``call`` for the session ``ctx``; never raises (cancellation aside)."""
        started = time.monotonic()
        tool = self._tools.get(call.name)
        try:
            if tool is None:
                raise ToolFailure(f"there is no relay tool {call.name!r}")
            if isinstance(tool, SessionTool):
                async with asyncio.timeout(tool.timeout_seconds):
                    return ToolResult(output=await tool.answer(call.arguments), ok=True)
            arguments = _arguments(call.arguments)
            async with asyncio.timeout(tool.timeout_seconds):
                value = await self._dispatch(tool, call, arguments, ctx)
            if isinstance(tool, HttpTool):
                value = {"ok": True, "result": value}  # the endpoint's JSON, as it is
            result = _success(value, respond=call.name != "end_turn_silently")
        except ToolFailure as exc:
            result = _failure(str(exc))
        except TimeoutError:
            seconds = tool.timeout_seconds if tool else 0
            result = _failure(f"{call.name} took longer than {seconds:g} s and was abandoned")
        except Exception:
            # The boundary for tool code: the session must survive any tool bug.
            logger.exception(
                "tool failed unexpectedly",
                extra={"tool": call.name, "call_id": call.call_id, "session_id": ctx.session_id},
            )
            result = _failure(f"{call.name} failed unexpectedly")
        logger.info(
            "tool ran",
            extra={
                "tool": call.name,
                "call_id": call.call_id,
                "session_id": ctx.session_id,
                "ok": result.ok,
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return result

    async def aclose(self) -> None:
        """Close the services' connection pools."""
        if self._builtins.recall is not None:
            await self._builtins.recall.aclose()
        if self._http is not None:
            await self._http.aclose()

    # Private

    async def _dispatch(
        self, tool: RelayTool, call: ToolCall, arguments: Mapping[str, Any], ctx: ToolContext
    ) -> Any:
        if isinstance(tool, BuiltinTool):
            return await self._builtins.run(tool.builtin, arguments, ctx)
        if self._http is None:  # build_registry refuses this; kept for direct construction
            raise ToolFailure("the relay has no signing secret for HTTP tools")
        return await self._http.run(
            tool,
            call_id=call.call_id,
            arguments=arguments,
            bot_id=ctx.bot_id,
            session_id=ctx.session_id,
        )


def build_registry(
    tools: Sequence[Any],
    *,
    slow_tools: SlowTools | None = None,
    recall_api_key: str | None = None,
    recall_region: str = "us-west-2",
    recall_api_base: str | None = None,
    signing_secret: str | None = None,
    table_name: str | None = None,
    dynamodb_endpoint: str | None = None,
    retention_days: int = 30,
) -> ToolRegistry:
    """The registry for agent.yaml's ``tools`` (client entries are skipped).

    Raises:
        ConfigError: an opted-in tool lacks what it needs (every problem listed).
    """
    relay_tools = [t for t in tools if isinstance(t, BuiltinTool | HttpTool)]
    names = {t.name for t in relay_tools}
    problems: list[str] = []
    recall: RecallBotApi | None = None
    notes: NoteStore | None = None
    http: HttpToolRunner | None = None
    if names & _NEEDS_RECALL:
        if not recall_api_key:
            needing = ", ".join(sorted(names & _NEEDS_RECALL))
            problems.append(f"tools {needing} need RECALL_API_KEY")
        else:
            try:
                base = region_base_url(recall_region, recall_api_base)
            except ValueError as exc:
                problems.append(f"RECALL_REGION: {exc}")
            else:
                recall = RecallBotApi(api_key=recall_api_key, region=recall_region, base=base)
    if names & _NEEDS_TABLE:
        if not table_name:
            needing = ", ".join(sorted(names & _NEEDS_TABLE))
            problems.append(f"tools {needing} need TABLE_NAME")
        else:
            notes = NoteStore(
                table_name, endpoint_url=dynamodb_endpoint, retention_days=retention_days
            )
    if any(isinstance(t, HttpTool) for t in relay_tools):
        if not signing_secret:
            problems.append("HTTP tools need RELAY_TOOL_SIGNING_SECRET (whsec_…) to sign requests")
        else:
            try:
                http = HttpToolRunner(signing_secret)
            except ValueError as exc:
                problems.append(f"RELAY_TOOL_SIGNING_SECRET {exc}")
    if problems:
        raise ConfigError(problems)
    meeting_exit = (
        MeetingExit(recall, table_name, endpoint_url=dynamodb_endpoint) if recall else None
    )
    builtins = Builtins(recall=recall, notes=notes, meeting_exit=meeting_exit)
    return ToolRegistry(relay_tools, builtins=builtins, http=http, slow_tools=slow_tools)


def _arguments(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_ARGUMENTS_CHARS:
        raise ToolFailure("the arguments are too long")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise ToolFailure("the arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise ToolFailure("the arguments must be a JSON object")
    return value


def _success(value: Any, *, respond: bool) -> ToolResult:
    output = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if len(output) > MAX_OUTPUT_CHARS:
        return _failure("the result is too long to use")
    return ToolResult(output=output, ok=True, respond=respond)


def _failure(message: str) -> ToolResult:
    output = json.dumps({"ok": False, "error": message}, separators=(",", ":"), ensure_ascii=False)
    return ToolResult(output=output, ok=False)
