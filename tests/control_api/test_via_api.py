"""`voicebot … --via-api` and the direct commands agree, and the API refuses unsigned calls.

The control API runs behind :mod:`tests.control_api.sigv4` (API Gateway's IAM check,
recomputed by botocore); the CLI signs with the test credentials of ``tests/conftest.py``.
Both paths read and write the same moto table and the same fake Recall.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from control_api.app import create_app
from control_api.runtime import Runtime
from control_api.settings import Secrets
from functions.minutes.job import MinutesJobRunner
from functions.minutes.store import MinutesStore
from functions.minutes.summarizer import SimulatedSummarizer
from functions.minutes.trigger import BotJob
from tests.cli.conftest import RECALL_KEY, TOKEN_SECRET, run_cli
from tests.cli.fake_recall import FakeRecall
from tests.control_api.conftest import PAGE, settings_for
from tests.control_api.sigv4 import verified
from tests.minutes.conftest import seed_meeting
from tests.webhooks.conftest import serve_in_thread

MEETING = "https://meet.google.com/abc-defg-hij"


@dataclass
class Paths:
    """Environments for the same command, direct and through the API."""

    direct: dict[str, str]
    via_api: dict[str, str]
    table_name: str
    endpoint: str
    url: str
    recall: FakeRecall


@pytest.fixture
def paths(dynamodb_endpoint: str, table_name: str, fake_recall: FakeRecall) -> Iterator[Paths]:
    """The signed API on loopback, and CLI environments for both paths."""
    settings = settings_for(table_name, fake_recall)
    table = boto3.resource(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    ).Table(table_name)

    def runtime() -> Runtime:
        return Runtime(settings=settings, secrets=Secrets(settings), table=table)

    with serve_in_thread(verified(create_app(runtime))) as url:
        direct = {
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
            "TABLE_NAME": table_name,
            "RECALL_API_KEY": RECALL_KEY,
            "RECALL_API_BASE": f"{fake_recall.url}/{{region}}",
            "RELAY_TOKEN_SECRET": TOKEN_SECRET,
        }
        # The API path needs no table, Recall key or token secret: only AWS credentials.
        via_api = {
            "VOICEBOT_API_URL": f"{url}/v1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        yield Paths(direct, via_api, table_name, dynamodb_endpoint, url, fake_recall)


def both(paths: Paths, args: list[str]) -> tuple[Any, Any]:
    """The JSON printed by ``voicebot ARGS --json`` directly and with ``--via-api``."""
    direct = run_cli([*args, "--json"], paths.direct)
    api = run_cli([*args, "--json", "--via-api"], paths.via_api)
    assert direct.exit_code == 0, direct.output
    assert api.exit_code == 0, api.output
    return json.loads(direct.stdout), json.loads(api.stdout)


def test_bots_created_either_way_read_the_same_either_way(paths: Paths) -> None:
    """create (direct and via the API), then show, bots, transcript: identical JSON."""
    created_direct = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--name", "Ada",
         "--memory", "team", "--json"],
        paths.direct,
    )  # fmt: skip
    created_api = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--name", "Ada", "--memory", "team",
         "--json", "--via-api"],
        paths.via_api,
    )  # fmt: skip
    assert created_api.exit_code == 0, created_api.output
    one, two = json.loads(created_direct.stdout), json.loads(created_api.stdout)
    assert set(one) == set(two)
    for field in ("region", "page_url", "join_at", "recorded"):
        assert one[field] == two[field]
    # Both bots went to Recall with the same options (ids and tokens aside).
    bodies = [r.body for r in paths.recall.requests]
    for body in bodies:
        body["metadata"].pop("session_id")
        body["output_media"]["camera"]["config"].pop("url")
    assert bodies[0] == bodies[1]

    for bot_id in (one["bot_id"], two["bot_id"]):
        direct, api = both(paths, ["bot", "show", bot_id])
        assert direct == api
        assert api["bot"]["bot_name"] == "Ada"
        direct, api = both(paths, ["transcript", bot_id])
        assert direct == api
    direct, api = both(paths, ["bots"])
    assert direct == api
    assert {one["bot_id"], two["bot_id"]} <= {b["bot_id"] for b in api}


def test_minutes_read_the_same_either_way(paths: Paths) -> None:
    """A meeting's minutes: identical JSON directly and via the API; the human form too."""
    bot_id = str(uuid.uuid4())
    client = boto3.client("dynamodb", endpoint_url=paths.endpoint, region_name="us-east-1")
    store = MinutesStore(client, paths.table_name)
    seed_meeting(store, bot_id=bot_id, session_id=str(uuid.uuid4()))
    MinutesJobRunner(store=store, summarizer=SimulatedSummarizer()).run(
        BotJob(bot_id=bot_id, trigger="bot.done")
    )
    direct, api = both(paths, ["bot", "minutes", bot_id])
    assert direct == api
    human_direct = run_cli(["bot", "minutes", bot_id], paths.direct).stdout
    human_api = run_cli(["bot", "minutes", bot_id, "--via-api"], paths.via_api).stdout
    assert human_direct == human_api


def test_leave_via_api_reaches_recall(paths: Paths) -> None:
    """bot leave --via-api: Recall gets leave_call for that bot."""
    created = json.loads(
        run_cli(
            ["bot", "create", "--meeting-url", MEETING, "--json", "--via-api"], paths.via_api
        ).stdout
    )
    left = run_cli(["bot", "leave", created["bot_id"], "--via-api"], paths.via_api)
    assert left.exit_code == 0, left.output
    assert paths.recall.requests[-1].path.endswith(f"/api/v1/bot/{created['bot_id']}/leave_call/")


def test_api_errors_are_one_line(paths: Paths) -> None:
    """An unknown bot via the API: the API's message, one line, exit 1; direct flags refused."""
    missing = run_cli(["bot", "show", "no-such-bot", "--via-api"], paths.via_api)
    assert missing.exit_code == 1
    assert missing.output.strip() == "error: control API answered 404: no bot no-such-bot"
    mixed = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--via-api"],
        paths.via_api,
    )
    assert mixed.exit_code == 2
    assert "--page-url: not with --via-api" in mixed.output
    # The operator's agent config is the one the stack deployed, not a local file.
    local = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--agent-config", "a.yaml", "--via-api"],
        paths.via_api,
    )
    assert local.exit_code == 2
    assert "--agent-config: not with --via-api" in local.output


def _binding(paths: Paths, session_id: str) -> Any:
    table = boto3.resource("dynamodb", endpoint_url=paths.endpoint, region_name="us-east-1").Table(
        paths.table_name
    )
    return table.get_item(Key={"pk": f"SESSION#{session_id}", "sk": "AGENT"}).get("Item")


@pytest.mark.parametrize(
    "persona",
    [
        ["--instructions", "Be brief."],
        ["--agent", "{file}"],
    ],
    ids=["instructions", "agent-file"],
)
def test_a_persona_is_stored_the_same_either_way(
    paths: Paths, persona: list[str], tmp_path: Any
) -> None:
    """--instructions / --agent FILE: same answer, same overlay bound to the session."""
    overlay_file = tmp_path / "bot.yaml"
    overlay_file.write_text("instructions: Speak French.\nvoice: cedar\ngreeting: Salut\n")
    flags = [a.replace("{file}", str(overlay_file)) for a in persona]
    base = ["bot", "create", "--meeting-url", MEETING, *flags, "--minutes-to-chat", "--json"]
    direct = run_cli([*base, "--page-url", PAGE], paths.direct)
    api = run_cli([*base, "--via-api"], paths.via_api)
    assert direct.exit_code == 0, direct.output
    assert api.exit_code == 0, api.output
    one, two = json.loads(direct.stdout), json.loads(api.stdout)
    assert one["persona"] == two["persona"] != []
    first, second = _binding(paths, one["session_id"]), _binding(paths, two["session_id"])
    assert first["overlay"] == second["overlay"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("speed: 2\n", "speed"),
        ("tools: [format_disk]\n", "format_disk"),
        ("instructions: 5\n", "instructions"),
    ],
    ids=["unknown-field", "unknown-tool", "wrong-type"],
)
def test_a_hostile_persona_is_refused_either_way(
    paths: Paths, content: str, problem: str, tmp_path: Any
) -> None:
    """The same problem named by both paths; Recall never asked to create a bot."""
    overlay_file = tmp_path / "bot.yaml"
    overlay_file.write_text(content)
    base = ["bot", "create", "--meeting-url", MEETING, "--agent", str(overlay_file)]
    direct = run_cli([*base, "--page-url", PAGE], paths.direct)
    api = run_cli([*base, "--via-api"], paths.via_api)
    assert direct.exit_code != 0
    assert api.exit_code != 0
    assert problem in direct.output
    assert problem in api.output
    assert paths.recall.requests == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/execute-api/"
         "aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
         "x-amz-date": "20260101T000000Z"},
    ],
    ids=["unsigned", "forged"],
)  # fmt: skip
def test_unsigned_or_forged_requests_are_refused(paths: Paths, headers: dict[str, str]) -> None:
    """Without a valid SigV4 signature nothing runs (API Gateway's IAM check)."""
    answer = httpx.post(
        f"{paths.url}/v1/bots", json={"meeting_url": MEETING}, headers=headers, trust_env=False
    )
    assert answer.status_code == 403
    assert paths.recall.requests == []


def test_wrong_credentials_are_refused(paths: Paths) -> None:
    """Signed by someone else: 403, reported in one line."""
    other = {**paths.via_api, "AWS_SECRET_ACCESS_KEY": "not-the-right-one"}
    result = run_cli(["bots", "--via-api"], other)
    assert result.exit_code == 1
    assert "control API answered 403" in result.output
