"""`make dev` as a person uses it: the printed agent page in Chromium, then `voicebot` with no
flags in a second terminal, showing the conversation just held in the browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.cli.conftest import TOKEN_SECRET, run_cli
from tests.cli.test_dev import (
    dev_env,
    read_banner,
    running_dev,
    start_dev,
    stop_dev,
)
from tests.conftest import ROOT as REPOSITORY
from tests.conftest import TIMEOUT, free_port
from tests.e2e.conftest import agent_stats, poll

pytestmark = pytest.mark.e2e

FIRST_SCREEN = "Speak, then pause: the agent answers when you stop."


def test_the_browser_conversation_is_shown_with_no_flags(page: Page):
    """The printed page says what to do, answers the meeting, and `voicebot` then lists that
    conversation and prints its transcript with nothing but the dev profile."""
    with running_dev() as dev:
        page.goto(dev.page_url)  # as printed: the token in the fragment
        assert page.locator("#heard-text").inner_text() == FIRST_SCREEN
        poll(lambda: agent_stats(page)["audioMsPlayed"] > 0, "a reply played in the page")

        def turns() -> list[dict[str, Any]] | None:
            shown = run_cli(["transcript", dev.page_session, "--json"], dev.profile_env())
            assert shown.exit_code == 0, shown.output
            found: list[dict[str, Any]] = json.loads(shown.stdout)
            return found if {t["role"] for t in found} >= {"user", "assistant"} else None

        said = poll(turns, "the page's turns in the local table", timeout=6 * TIMEOUT)
        assert any(t["role"] == "user" and t["text"].startswith("(heard ") for t in said)

        listed = run_cli(["bots", "--json"], dev.profile_env())
        assert listed.exit_code == 0, listed.output
        [row] = [b for b in json.loads(listed.stdout) if b["bot_id"] == dev.page_session]
        assert row["bot_name"] == "agent page (voicebot dev)"
        shown = run_cli(["bot", "show", dev.page_session], dev.profile_env())
        assert shown.exit_code == 0, shown.output
        assert "Transcript (" in shown.stdout


def test_the_simulated_model_takes_a_note_while_the_page_plays_its_answer(
    page: Page, tmp_path: Path
):
    """A relay tool end to end: the simulated model calls take_note after a spoken turn, the
    relay runs it for the page's bot, the page plays the answer, and `bot show` lists the note."""
    agent = (REPOSITORY / "relay_container" / "agent.yaml").read_text()
    agent = agent.replace("\ntools: []\n", "\ntools:\n  - builtin: take_note\n")
    assert "builtin: take_note" in agent
    (tmp_path / "agent.yaml").write_text(agent)
    ports = [str(free_port()) for _ in range(3)]
    profile = tmp_path / "profile.json"
    args = ["--relay-port", ports[0], "--webhook-port", ports[1], "--dynamodb-port", ports[2]]
    env = dev_env(
        profile, RELAY_TOKEN_SECRET=TOKEN_SECRET, AGENT_CONFIG=str(tmp_path / "agent.yaml")
    )
    proc, lines, stderr = start_dev([*args, "--simulator-tool", "take_note"], env)
    try:
        dev = read_banner(proc, lines, profile, stderr)
        page.goto(dev.page_url)
        poll(lambda: agent_stats(page)["audioMsPlayed"] > 0, "a reply played in the page")

        def notes() -> list[dict[str, Any]] | None:
            shown = run_cli(["bot", "show", dev.page_session, "--json"], dev.profile_env())
            assert shown.exit_code == 0, shown.output
            found: list[dict[str, Any]] = json.loads(shown.stdout).get("notes", [])
            return found or None

        [note, *_] = poll(notes, "a note the model took, under the page's bot", timeout=6 * TIMEOUT)
        assert note["text"]  # what was heard, as the simulator passes it
        shown = run_cli(["bot", "show", dev.page_session], dev.profile_env())
        assert "Notes (" in shown.stdout  # the human view lists them too
    finally:
        stop_dev(proc)
