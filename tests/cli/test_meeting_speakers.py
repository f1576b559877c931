"""Speaker names, as the relay records them, in ``voicebot bot show`` and ``voicebot transcript``.

The bot is created by the CLI (against a fake Recall), its session's turns are written by
the relay's own recorder to moto over HTTP, as a meeting with Recall's events leaves them:
spoken turns with the speaker the relay attributed, and a chat line with its sender.
"""

from __future__ import annotations

import json

from relay.events import INPUT_COMMITTED, TRANSCRIPTION_COMPLETED
from relay.record_writer import SessionRecorder
from tests.cli.conftest import run_cli
from tests.conftest import TIMEOUT

MEETING = "https://meet.google.com/abc-defg-hij"
#: Retitles the terminal and rings its bell if printed raw.
HOSTILE_NAME = "Eve\x1b]0;pwned\x07"
PAGE = "https://agent.example.com/"


async def record_meeting(table: str, endpoint: str, session_id: str) -> None:
    recorder = SessionRecorder(table, region="us-east-1", endpoint_url=endpoint)
    recorder.start()
    record = recorder.connection_started(session_id=session_id, connection_id="c1", model="m")
    for item_id, speaker, words in (
        ("item_1", "Grace", "Let's look at the roadmap."),
        ("item_2", "Linus", "Ava, what did we decide?"),
    ):
        record.speaker_hint = speaker  # what the session core sets from relay.meeting
        record.on_upstream_event(
            INPUT_COMMITTED, json.dumps({"type": INPUT_COMMITTED, "item_id": item_id})
        )
        record.on_upstream_event(
            TRANSCRIPTION_COMPLETED,
            json.dumps({"type": TRANSCRIPTION_COMPLETED, "item_id": item_id, "transcript": words}),
        )
    record.chat_turn("Ada", "Can you share the agenda?")
    record.speaker_hint = HOSTILE_NAME  # a display name anyone in the meeting can choose
    record.on_upstream_event(
        INPUT_COMMITTED, json.dumps({"type": INPUT_COMMITTED, "item_id": "item_3"})
    )
    record.on_upstream_event(
        TRANSCRIPTION_COMPLETED,
        json.dumps({"type": TRANSCRIPTION_COMPLETED, "item_id": "item_3", "transcript": "bye"}),
    )
    await recorder.flush(TIMEOUT)
    await recorder.aclose(TIMEOUT)


async def test_bot_show_and_transcript_name_the_speakers(
    fake_recall, recall_env, table_name, dynamodb_endpoint
):
    env = {**recall_env, "AWS_ENDPOINT_URL": dynamodb_endpoint}
    args = ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--table", table_name]
    created = json.loads(run_cli([*args, "--json"], env).output)
    await record_meeting(table_name, dynamodb_endpoint, created["session_id"])

    shown = run_cli(["bot", "show", created["bot_id"], "--table", table_name], env)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert any("Grace" in line and "roadmap" in line for line in lines)
    assert any("Linus" in line and "what did we decide" in line for line in lines)
    assert any("Ada (chat)" in line and "agenda" in line for line in lines)
    assert "\x1b" not in shown.output
    assert "\x07" not in shown.output

    transcript = run_cli(["transcript", created["bot_id"], "--table", table_name], env)
    assert transcript.exit_code == 0, transcript.output
    said = [line.split(None, 1)[1] for line in transcript.output.splitlines()]
    assert said[0].startswith("Grace")
    assert said[1].startswith("Linus")
    assert said[2].startswith("Ada (chat)")
    assert "\x1b" not in transcript.output
    assert said[3].startswith("Eve\\x1b")  # shown as an escape, inert
    as_json = json.loads(
        run_cli(["transcript", created["bot_id"], "--table", table_name, "--json"], env).output
    )
    assert [(t.get("speaker"), t.get("via")) for t in as_json] == [
        ("Grace", None),
        ("Linus", None),
        ("Ada", "chat"),
        (HOSTILE_NAME, None),
    ]
