"""Every control API endpoint with valid and hostile input, over HTTP: moto, a fake Recall."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from control_api.app import create_app
from control_api.idempotency import Idempotency
from control_api.runtime import Runtime
from control_api.settings import Secrets
from functions.minutes.job import MinutesJobRunner
from functions.minutes.store import MinutesStore
from functions.minutes.summarizer import SimulatedSummarizer
from functions.minutes.trigger import BotJob
from relay import tokens
from tests.cli.conftest import RECALL_KEY, TOKEN_SECRET
from tests.cli.fake_recall import Answer
from tests.cli.test_recall_commands import check_realtime_endpoints
from tests.control_api.conftest import PAGE, Api, settings_for
from tests.minutes.conftest import seed_meeting
from tests.webhooks.conftest import serve_in_thread

MEETING = "https://meet.google.com/abc-defg-hij"
JSON = {"content-type": "application/json"}


def create(api: Api, body: dict[str, Any], key: str | None = None) -> Any:
    headers = dict(JSON)
    if key is not None:
        headers["idempotency-key"] = key
    return api.post("/v1/bots", content=json.dumps(body), headers=headers)


def minutes_store(api: Api) -> MinutesStore:
    client = boto3.client("dynamodb", endpoint_url=api.endpoint, region_name="us-east-1")
    return MinutesStore(client, api.table_name)


def test_create_makes_the_bot_records_it_and_hides_the_token(api: Api) -> None:
    """201: Recall got the agent page with a token bound to the session; the bot is recorded."""
    answer = create(api, {"meeting_url": MEETING, "bot_name": "Ada", "memory_key": "team-a"})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    [request] = api.recall.requests
    assert request.path == "/us-west-2/api/v1/bot/"
    assert request.headers["authorization"] == RECALL_KEY
    page = urlsplit(request.body["output_media"]["camera"]["config"]["url"])
    [token] = parse_qs(page.fragment)["token"]
    assert tokens.verify(token, TOKEN_SECRET).sub == created["session_id"]
    assert token not in answer.text
    assert created["page_url"] == PAGE
    assert created["recorded"] is True
    check_realtime_endpoints(request.body, PAGE)  # the same subscription as the CLI's
    state = api.get(f"/v1/bots/{created['bot_id']}").json()["bot"]
    assert state["session_id"] == created["session_id"]
    assert state["bot_name"] == "Ada"
    pointer = minutes_store(api).session_bot(created["session_id"])
    assert pointer is not None
    assert pointer["memory_key"] == "team-a"


def test_replayed_idempotency_key_answers_the_first_answer(api: Api) -> None:
    """Same key, same body: one bot, the same answer; another body: 422; unkeyed: new bots."""
    body = {"meeting_url": MEETING}
    first = create(api, body, key="k-1")
    again = create(api, body, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(api.recall.created_ids) == 1
    other = create(api, {"meeting_url": MEETING, "bot_name": "Other"}, key="k-1")
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert len(api.recall.created_ids) == 1
    create(api, body)
    create(api, body)
    assert len(api.recall.created_ids) == 3


def test_key_in_progress_is_409_and_a_failed_create_frees_the_key(api: Api) -> None:
    """A key being processed answers 409; Recall refusing releases the key for a retry."""
    table = boto3.resource("dynamodb", endpoint_url=api.endpoint, region_name="us-east-1").Table(
        api.table_name
    )
    body = {"meeting_url": MEETING}
    Idempotency(table).begin("local", "busy", json.dumps(body).encode())
    assert create(api, body, key="busy").status_code == 409
    api.recall.script(Answer(400, {"detail": "meeting_url invalid"}))
    refused = create(api, body, key="k-2")
    assert refused.status_code == 502
    assert "meeting_url invalid" in refused.json()["message"]
    assert create(api, body, key="k-2").status_code == 201


BAD_BODIES = [
    ({}, "meeting_url: Field required"),
    ({"meeting_url": 5}, "meeting_url"),
    ({"meeting_url": MEETING, "token_ttl": "3600"}, "token_ttl"),
    ({"meeting_url": MEETING, "token_ttl": 10}, "token_ttl"),
    ({"meeting_url": MEETING, "extra": True}, "extra: Extra inputs are not permitted"),
    ({"meeting_url": "http://meet.google.com/x"}, "meeting_url: "),
    ({"meeting_url": "https://evil.example.com/x"}, "not a supported meeting host"),
    ({"meeting_url": MEETING, "region": "mars-1"}, "region: one of"),
    ({"meeting_url": MEETING, "join_at": "2001-01-01T00:00:00Z"}, "join_at: must be in the future"),
    ({"meeting_url": MEETING, "join_at": "tomorrow"}, "join_at"),
    ({"meeting_url": MEETING, "memory_key": "has space"}, "memory_key"),
    ({"meeting_url": MEETING, "bot_name": "x" * 101}, "bot_name"),
    ({"meeting_url": MEETING, "persona": "\x1b[2J"}, "persona"),
    ([MEETING], "Input should be an object"),
]


@pytest.mark.parametrize(
    ("body", "problem"),
    BAD_BODIES,
    ids=[
        "missing-url", "url-type", "ttl-string", "ttl-small", "unknown-field", "http-url",
        "unsupported-host", "unknown-region", "join-in-past", "join-garbage", "memory-space",
        "long-name", "control-persona", "list-body",
    ],
)  # fmt: skip
def test_create_refuses_bad_input_with_a_clear_400(api: Api, body: Any, problem: str) -> None:
    """Each bad field is named, its value never echoed; Recall is not called; nothing stored."""
    answer = create(api, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert problem in answer.json()["message"]
    assert "\x1b" not in answer.text
    assert api.recall.requests == []


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{" * 20_000, JSON, 413),
        (b"not json", JSON, 400),
        (json.dumps({"meeting_url": MEETING}).encode(), {"content-type": "text/plain"}, 415),
        (b"\xff\xfe", JSON, 400),
        (json.dumps({"meeting_url": MEETING}).encode(), {**JSON, "idempotency-key": "a b"}, 400),
        (
            json.dumps({"meeting_url": MEETING}).encode(),
            {**JSON, "idempotency-key": "k" * 201},
            400,
        ),
    ],
    ids=["huge", "not-json", "not-json-type", "not-utf8", "key-space", "key-long"],
)
def test_create_refuses_hostile_bodies(
    api: Api, content: bytes, headers: dict[str, str], status: int
) -> None:
    """Oversized, non-JSON and badly keyed requests get their 4xx; nothing reaches Recall."""
    answer = api.post("/v1/bots", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert api.recall.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/bots/{bot}",
        "/v1/bots/{bot}/transcript",
        "/v1/bots/{bot}/notes",
        "/v1/bots/{bot}/minutes",
    ],
)
def test_unknown_and_malformed_bot_ids(api: Api, path: str) -> None:
    """An unknown bot is 404; an id that cannot be a key is 400."""
    unknown = api.get(path.format(bot=uuid.uuid4()))
    assert unknown.status_code == 404
    assert unknown.json()["error"] in {"unknown_bot", "minutes_not_ready"}
    assert api.get(path.format(bot="%E2%80%AEbidi")).status_code == 400
    assert api.get(path.format(bot="x" * 300)).status_code == 400


def test_reads_show_what_the_table_holds(api: Api) -> None:
    """State and timeline, transcript, notes, minutes (404 until built), and the list."""
    bot_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    store = minutes_store(api)
    seed_meeting(store, bot_id=bot_id, session_id=session_id, memory_key="k")
    shown = api.get(f"/v1/bots/{bot_id}").json()
    assert shown["bot"]["bot_id"] == bot_id
    assert "pk" not in shown["bot"]
    turns = api.get(f"/v1/bots/{bot_id}/transcript").json()["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    notes = api.get(f"/v1/bots/{bot_id}/notes").json()["notes"]
    assert [n["text"] for n in notes] == ["Budget review moved to next week."]
    not_yet = api.get(f"/v1/bots/{bot_id}/minutes")
    assert not_yet.status_code == 404
    assert not_yet.json()["error"] == "minutes_not_ready"
    MinutesJobRunner(store=store, summarizer=SimulatedSummarizer()).run(
        BotJob(bot_id=bot_id, trigger="bot.done")
    )
    built = api.get(f"/v1/bots/{bot_id}/minutes").json()
    assert "ship the beta on Friday" in " ".join(built["minutes"]["decisions"])
    assert "claim_id" not in built
    listed = api.get("/v1/bots", params={"limit": 5}).json()["bots"]
    assert bot_id in [b["bot_id"] for b in listed]
    for bad in ({"limit": 0}, {"limit": "many"}, {"days": 400}):
        assert api.get("/v1/bots", params=bad).status_code == 400


def test_leave_asks_recall_in_the_bots_region(api: Api) -> None:
    """202, and Recall got leave_call in the region recorded at creation."""
    created = create(api, {"meeting_url": MEETING, "region": "eu-central-1"}).json()
    answer = api.post(f"/v1/bots/{created['bot_id']}/leave")
    assert answer.status_code == 202
    assert answer.json() == {
        "bot_id": created["bot_id"],
        "region": "eu-central-1",
        "status": "leaving",
    }
    assert (
        api.recall.requests[-1].path == f"/eu-central-1/api/v1/bot/{created['bot_id']}/leave_call/"
    )
    assert api.post(f"/v1/bots/{uuid.uuid4()}/leave").status_code == 404


def test_unfilled_secret_is_503_and_names_the_secret(
    dynamodb_endpoint: str, table_name: str, fake_recall: Any
) -> None:
    """A Recall key secret still holding its placeholder: 503 saying so, nothing created."""
    settings = settings_for(
        table_name, fake_recall, recall_api_key=None, recall_api_key_secret_arn="arn:recall"
    )
    table = boto3.resource("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    secrets = Secrets(settings, reader=lambda arn: "UNSET-put-the-key-here")

    def runtime() -> Runtime:
        return Runtime(settings=settings, secrets=secrets, table=table.Table(table_name))

    import httpx

    with serve_in_thread(create_app(runtime)) as url:
        answer = httpx.post(
            url + "/v1/bots", json={"meeting_url": MEETING}, trust_env=False, timeout=10
        )
    assert answer.status_code == 503
    assert "arn:recall" in answer.json()["message"]
    assert "UNSET" not in answer.text
    assert fake_recall.requests == []


def test_openapi_document_is_served_and_checked_in(api: Api) -> None:
    """GET /v1/openapi.json is the document in docs/control-api.openapi.json."""
    from tests.conftest import ROOT

    served = api.get("/v1/openapi.json").json()
    checked_in = json.loads((ROOT / "docs" / "control-api.openapi.json").read_text())
    assert served == checked_in, "regenerate: python -m control_api.openapi > docs/..."
    assert set(served["paths"]) == {
        "/v1/bots",
        "/v1/bots/{bot_id}",
        "/v1/bots/{bot_id}/leave",
        "/v1/bots/{bot_id}/transcript",
        "/v1/bots/{bot_id}/notes",
        "/v1/bots/{bot_id}/minutes",
    }
    body = served["paths"]["/v1/bots"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/CreateBot"}
    assert served["components"]["schemas"]["CreateBot"]["additionalProperties"] is False


def test_the_lambda_imports_no_cli_framework() -> None:
    """The function's bundle has no click: importing the app pulls in none of the CLI's commands."""
    import subprocess
    import sys

    probe = "import control_api.app, sys; print('click' in sys.modules, 'cli.main' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


class RefusingStateWrites:
    """The real table, except that writing a bot's STATE is refused (a fault injected)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def update_item(self, **kwargs: Any) -> Any:
        if kwargs.get("Key", {}).get("sk") == "STATE":
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "UpdateItem",
            )
        return self._table.update_item(**kwargs)


def test_bot_created_but_not_recorded_is_named_and_never_created_twice(
    dynamodb_endpoint: str, table_name: str, fake_recall: Any
) -> None:
    """Recall made the bot, the table refused it: 503 naming the bot; the key stays taken."""
    import httpx

    settings = settings_for(table_name, fake_recall)
    table = boto3.resource(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    ).Table(table_name)

    def runtime() -> Runtime:
        faulty: Any = RefusingStateWrites(table)
        return Runtime(settings=settings, secrets=Secrets(settings), table=faulty)

    with serve_in_thread(create_app(runtime)) as url:
        headers = {"idempotency-key": "once"}
        first = httpx.post(
            url + "/v1/bots", json={"meeting_url": MEETING}, headers=headers, trust_env=False
        )
        again = httpx.post(
            url + "/v1/bots", json={"meeting_url": MEETING}, headers=headers, trust_env=False
        )
    assert first.status_code == 503
    assert first.json()["error"] == "not_recorded"
    assert fake_recall.created_ids[0] in first.json()["message"]
    assert again.status_code == 409
    assert len(fake_recall.created_ids) == 1


def test_an_unexpected_failure_is_a_json_500_without_internals(
    dynamodb_endpoint: str, table_name: str, fake_recall: Any
) -> None:
    """A bug below the routes answers JSON 500 and leaks no traceback or value."""
    import httpx

    settings = settings_for(table_name, fake_recall)

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("secret-internal-detail")

    def runtime() -> Runtime:
        broken: Any = Broken()
        return Runtime(settings=settings, secrets=Secrets(settings), table=broken)

    with serve_in_thread(create_app(runtime)) as url:
        answer = httpx.get(url + "/v1/bots/b1", trust_env=False)
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal_error", "message": "unexpected error; retry later"}
