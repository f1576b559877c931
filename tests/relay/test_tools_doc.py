"""docs/tools.md's worked example endpoint, run as written, accepts the relay's signed
calls (users copy it, so it must work) and refuses a request with a bad signature."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import pytest

from relay.agent import AgentConfig
from relay.tool_calls import ToolCall
from relay.tools.builtins import ToolContext
from relay.tools.registry import build_registry
from tests.conftest import ROOT, TIMEOUT, free_port, stop_process, wait_for_port
from tests.relay.tool_endpoint import SECRET


def example_endpoint() -> str:
    """The Python block of step 2 of the worked example, dedented."""
    doc = (ROOT / "docs" / "tools.md").read_text()
    step = doc[doc.index("2. The endpoint") :]
    block = re.search(r"```python\n(.*?)```", step, re.S)
    assert block is not None
    return textwrap.dedent(block.group(1))


@pytest.fixture
def endpoint_url(tmp_path) -> Iterator[str]:
    script = tmp_path / "tools_endpoint.py"
    script.write_text(example_endpoint())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={"PORT": str(port), "TOOL_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, time.monotonic() + TIMEOUT, proc)
        yield f"http://127.0.0.1:{port}/create_ticket"
    finally:
        stop_process(proc)


async def test_worked_example_endpoint_serves_the_relay(endpoint_url):
    """The documented endpoint verifies our signature, answers, and is idempotent per call."""
    tools = AgentConfig.model_validate(
        {
            "tools": [
                {
                    "name": "create_ticket",
                    "description": "File a ticket.",
                    "parameters": {"type": "object"},
                    "url": endpoint_url,
                }
            ]
        }
    ).tools
    registry = build_registry(tools, signing_secret=SECRET)
    ctx = ToolContext(session_id="s", bot_id="b")
    try:
        first = await registry.run(
            ToolCall("call_1", "create_ticket", '{"title": "Fix login"}', "r"), ctx
        )
        again = await registry.run(
            ToolCall("call_1", "create_ticket", '{"title": "Fix login"}', "r"), ctx
        )
        bad = await registry.run(ToolCall("call_2", "create_ticket", '{"title": ""}', "r"), ctx)
    finally:
        await registry.aclose()
    assert json.loads(first.output) == {
        "ok": True,
        "result": {"ticket": "T-1000", "title": "Fix login"},
    }
    assert again.output == first.output
    assert json.loads(bad.output) == {
        "ok": False,
        "error": "the create_ticket service answered 400",
    }
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        unsigned = await client.post(endpoint_url, json={"tool": "create_ticket"})
    assert unsigned.status_code == 401
