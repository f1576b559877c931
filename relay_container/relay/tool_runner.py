"""ToolRunner: the asyncio shell around ToolCallTracker and ToolRegistry for one session.

The session hands it the upstream events that matter for tools (it parses only the types
in ``tool_calls.UPSTREAM_EVENT_TYPES``, never audio) and the client events the guard
checks; it runs each relay call in a task it owns, sends the output (and
``response.create``) upstream through the session's ``send_upstream``, and speaks a
filler while a tool runs longer than ``slow_tools.after_ms``. Frames are UTF-8 JSON
bytes: ``send_upstream`` must send them as text frames (the Realtime API has no binary).
Tool calls never block the pumps: ``on_upstream`` and ``check_client`` are synchronous
and return at once.

How the session uses it::

    runner = ToolRunner(registry, tracker, ctx,
                        send_upstream=lambda frame: upstream.send(frame, text=True),
                        on_start=record_call_started,     # before it runs: never twice
                        on_result=record_call_output)     # for seeding on resume
    # upstream pump, per text frame whose type it peeked:
    if event_type in UPSTREAM_EVENT_TYPES:
        runner.on_upstream(event_type, raw)
    # client pump, for CLIENT_EVENT_TYPES:
    verdict = runner.check_client(event_type, raw)   # refused → send verdict.refusal to client
    await runner.aclose()                            # on session end: cancels running tools

A tool still running when the session ends is cancelled (its call id is already marked
executed, so a resumed session does not run it again; the model is told nothing, as
nobody is there to hear it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from relay.tool_calls import ToolCall, ToolCallTracker
from relay.tool_guard import ClientVerdict
from relay.tools.builtins import ToolContext
from relay.tools.registry import ToolRegistry, ToolResult

logger = logging.getLogger(__name__)

#: Most tool calls running at once in one session; more are answered with an error.
MAX_RUNNING: Final = 8
#: Latency samples kept (function_call_arguments.done → output sent), for metrics.
MAX_SAMPLES: Final = 1024
#: Largest upstream tool event parsed (a response.done with transcripts stays far below).
MAX_EVENT_BYTES: Final = 1024 * 1024
ARGUMENTS_DONE: Final = "response.function_call_arguments.done"


class ToolRunner:
    """Runs one session's relay tool calls; see the module docstring."""

    def __init__(
        self,
        registry: ToolRegistry,
        tracker: ToolCallTracker,
        ctx: ToolContext,
        *,
        send_upstream: Callable[[bytes], Awaitable[None]],
        on_start: Callable[[ToolCall], None] | None = None,
        on_result: Callable[[ToolCall, ToolResult], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Run calls of ``registry``'s tools for ``ctx``, sending with ``send_upstream``."""
        self._registry = registry
        self._tracker = tracker
        self._ctx = ctx
        self._send = send_upstream
        self._on_start = on_start
        self._on_result = on_result
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._arguments_done_at: dict[str, float] = {}
        #: Milliseconds from ``function_call_arguments.done`` to the output being sent.
        self.latencies_ms: deque[float] = deque(maxlen=MAX_SAMPLES)

    # What the session calls

    def on_upstream(self, event_type: str, raw: str | bytes) -> None:
        """Take one upstream event of a tool-relevant type; start any calls it completes."""
        if len(raw) > MAX_EVENT_BYTES:
            return
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict):
            return
        call_id = event.get("call_id")
        if event_type == ARGUMENTS_DONE and isinstance(call_id, str):
            if len(self._arguments_done_at) >= MAX_SAMPLES:  # calls that never ran
                self._arguments_done_at.pop(next(iter(self._arguments_done_at)))
            self._arguments_done_at[call_id] = self._clock()
        for call in self._tracker.on_upstream_event(event_type, event):
            self._start(call)
        if (create := self._tracker.pending_response_create()) is not None:
            self._spawn(self._send_all([create]))

    def check_client(self, event_type: str, raw: str | bytes) -> ClientVerdict:
        """The guard's verdict on a client event (malformed events pass: the model answers)."""
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            return ClientVerdict(forward=None)
        if not isinstance(event, dict):
            return ClientVerdict(forward=None)
        return self._tracker.check_client_event(event_type, event)

    @property
    def running(self) -> int:
        """Tool calls in progress."""
        return len(self._tasks)

    def cancel(self) -> None:
        """Cancel running tools without waiting (the session ended)."""
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        """Cancel running tools and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # Private

    def _start(self, call: ToolCall) -> None:
        if self._on_start is not None:
            # Recorded before it runs: a task that dies mid-call never lets it run again.
            self._on_start(call)
        if len(self._tasks) >= MAX_RUNNING:
            result = ToolResult(
                output=json.dumps({"ok": False, "error": "too many tools are running"}),
                ok=False,
            )
            self._spawn(self._finish(call, result))
            return
        self._spawn(self._run(call))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: ToolCall) -> None:
        work = asyncio.ensure_future(self._registry.run(call, self._ctx))
        try:
            instructions = self._registry.slow_instructions(call.name)
            after = self._registry.slow_tools.after_ms / 1000
            if instructions is not None:
                done, _ = await asyncio.wait({work}, timeout=after)
                if not done:
                    filler = self._tracker.slow_tool_response(call.call_id, instructions)
                    if filler is not None:
                        await self._send(filler)
            result = await work
        finally:
            if not work.done():
                work.cancel()
        await self._finish(call, result)

    async def _finish(self, call: ToolCall, result: ToolResult) -> None:
        frames = self._tracker.tool_finished(call.call_id, result.output, respond=result.respond)
        started = self._arguments_done_at.pop(call.call_id, None)
        if frames:
            await self._send(frames[0])  # the function_call_output
            if started is not None:
                self.latencies_ms.append((self._clock() - started) * 1000)
        await self._send_all(frames[1:])
        if self._on_result is not None:
            self._on_result(call, result)

    async def _send_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self._send(frame)
