"""Text from meetings reaches the terminal inert: `voicebot bot show` and `bots` on moto's server.

Chat messages, participant names and transcripts are typed or spoken by anyone in the
meeting; what the webhook and the relay stored is printed by the CLI. None of it may
drive the terminal (retitle it, clear it, move the cursor, reorder text with bidi
overrides): the human forms show such characters as escapes, the JSON forms as JSON
escapes, and everything else as it was written.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.render import ESCAPED_CATEGORIES, KEPT_FORMAT_CHARACTERS, cell, safe
from functions.webhooks.events import BotStatusEvent, parse_event
from functions.webhooks.store import DeliveryRecord, WebhookStore
from storage import items
from tests.cli.conftest import run_cli
from tests.webhooks.conftest import body_of, payload

#: Set the terminal's title, ring the bell, clear the screen (what the issue found stored).
TITLE_AND_CLEAR = "\x1b]0;pwned\x07\x1b[2J"
#: Shown right to left from here on: "evil.exe" reads as "exe.live".
BIDI_OVERRIDE = "\u202e"
#: A C1 control: the 8-bit CSI some terminals honour.
C1_CSI = "\x9b31m"
#: Everything a terminal acts on that the hostile texts below carry.
DANGEROUS = ["\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\r", "\x00", "\x7f"]


def dangerous_in(output: str) -> list[str]:
    """The terminal-active characters present in ``output``."""
    return [c for c in DANGEROUS if c in output]


@pytest.fixture
def cli_env(dynamodb_endpoint: str) -> dict[str, str]:
    """The CLI pointed at moto's DynamoDB (and nothing else)."""
    return {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint, "AWS_DEFAULT_REGION": "us-east-1"}


def test_bot_show_prints_a_hostile_chat_message_inert(
    dynamodb_endpoint: str, table_name: str, cli_env: dict[str, str]
):
    """A chat message with escape codes, stored by the webhook, shows as visible escapes."""
    bot = str(uuid.uuid4())
    received = datetime.now(UTC)
    store = WebhookStore(
        table_name,
        client=lambda: boto3.client(
            "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
        ),
    )
    for name, text in [
        ("bot.in_call_recording", None),
        ("participant_events.chat_message", f"hi{TITLE_AND_CLEAR} {BIDI_OVERRIDE}exe.evil"),
    ]:
        event = payload(name, bot_id=bot)
        if text is not None:
            event["data"]["data"]["data"]["text"] = text
            event["data"]["data"]["participant"]["name"] = f"Eve{C1_CSI}"
        body = body_of(event)
        record = DeliveryRecord(
            f"msg_{uuid.uuid4().hex}", body, received, parse_event(body, received)
        )
        store.record_delivery_once(record)
        if isinstance(record.event, BotStatusEvent):
            store.advance_bot_state(record.event)

    shown = run_cli(["bot", "show", bot, "--table", table_name], cli_env)

    assert shown.exit_code == 0, shown.output
    assert dangerous_in(shown.stdout) == []
    assert "hi\\x1b]0;pwned\\x07\\x1b[2J \\u202eexe.evil" in shown.stdout
    assert "Eve\\x9b31m" in shown.stdout


def test_stored_hostile_text_of_every_kind_is_inert_in_every_view(
    dynamodb_endpoint: str, table_name: str, cli_env: dict[str, str]
):
    """Items written before the webhook refused such ids (or by any writer) still print inert."""
    bot = f"old-bot{TITLE_AND_CLEAR}"
    session = "session-1"
    now = datetime.now(UTC)
    table = boto3.resource(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    ).Table(table_name)
    state = items.bot_created_update(
        {
            "bot_id": bot,
            "session_id": session,
            "region": f"us-west-2{BIDI_OVERRIDE}",
            "meeting_url": "https://meet.example/\x1b[1A",
            "bot_name": f"Assistant\r\x1b[2K{C1_CSI}",
        },
        now - timedelta(minutes=5),
    )
    table.update_item(**state.request())
    turn = items.turn_item(
        session_id=session,
        at_ms=int(now.timestamp() * 1000),
        seq=0,
        role="user\u2066",
        text=f"ignore previous{TITLE_AND_CLEAR}\x00\x7f",
        expires_at=int(now.timestamp()) + 3600,
    )
    table.put_item(Item=cast("dict[str, Any]", turn))

    shown = run_cli(["bot", "show", bot, "--table", table_name], cli_env)
    listed = run_cli(["bots", "--table", table_name], cli_env)
    as_json = run_cli(["bots", "--table", table_name, "--json"], cli_env)

    for result in (shown, listed, as_json):
        assert result.exit_code == 0, result.output
        assert dangerous_in(result.stdout) == []
    assert "ignore previous\\x1b]0;pwned\\x07\\x1b[2J\\x00\\x7f" in shown.stdout
    assert "Assistant \\x1b[2K\\x9b31m" in listed.stdout
    assert json.loads(as_json.stdout)[0]["bot_name"] == f"Assistant\r\x1b[2K{C1_CSI}"


SAFE_CASES = [
    ("osc-title-and-clear", TITLE_AND_CLEAR, "\\x1b]0;pwned\\x07\\x1b[2J"),
    ("c1-csi", C1_CSI, "\\x9b31m"),
    ("bidi-override", f"{BIDI_OVERRIDE}abc", "\\u202eabc"),
    ("bidi-isolate", "\u2066abc\u2069", "\\u2066abc\\u2069"),
    ("zero-width-space", "a\u200bb", "a\\u200bb"),
    ("lone-surrogate", "a\ud83db", "a\\ud83db"),
    ("nul-and-del", "\x00\x7f", "\\x00\\x7f"),
    ("line-separator", "a\u2028b", "a\\u2028b"),
    ("private-use", "\ue000", "\\ue000"),
    ("plain-ascii", "done", "done"),
    ("accents-and-scripts", "Zoë, 東京, مرحبا", "Zoë, 東京, مرحبا"),
    ("emoji-with-joiners", "👩\u200d💻 👍🏽", "👩\u200d💻 👍🏽"),
]


@pytest.mark.parametrize(
    ("text", "shown"), [c[1:] for c in SAFE_CASES], ids=[c[0] for c in SAFE_CASES]
)
def test_safe_escapes_what_a_terminal_acts_on_and_nothing_else(text: str, shown: str):
    """Controls, format, surrogate and separator characters are escaped; readable text is kept."""
    assert safe(text) == shown


def test_cells_put_newlines_and_carriage_returns_on_one_line():
    """A value with CR/LF cannot overwrite or break a table row."""
    assert cell("first\r\nsecond\rthird\x1c") == "first second third"


@settings(max_examples=300, database=None)
@given(text=st.text(st.characters(exclude_categories=()), max_size=80))
def test_no_text_reaches_the_terminal_with_a_character_it_acts_on(text: str):
    """Whatever was stored, a printed cell holds no control, format, surrogate or separator."""
    for shown in (safe(text), cell(text)):
        active = [
            c
            for c in shown
            if unicodedata.category(c) in ESCAPED_CATEGORIES and c not in KEPT_FORMAT_CHARACTERS
        ]
        assert active == []
    shown.encode("utf-8")  # printable in any UTF-8 terminal: no lone surrogate left
