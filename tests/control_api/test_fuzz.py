"""Schema-driven fuzz of the control API from its OpenAPI document: no 5xx, no stored garbage.

Bodies come from the checked-in document's ``CreateBot`` schema (:func:`from_schema`, a
small JSON Schema → hypothesis translation of the subset the document uses; the
``hypothesis-jsonschema`` package does not run on this hypothesis), as valid documents,
as documents with one field of the wrong type, and as arbitrary JSON; path and query
values from arbitrary text. Bounded: a fixed number of examples each (well under a
minute together on the test VM), no deadline per example (moto is slow, not wrong).
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any
from urllib.parse import quote

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import schema
from tests.conftest import ROOT
from tests.control_api.conftest import Api

DOCUMENT = json.loads((ROOT / "docs" / "control-api.openapi.json").read_text())
CREATE_SCHEMA = DOCUMENT["components"]["schemas"]["CreateBot"]
MEETINGS = st.sampled_from(
    ["https://meet.google.com/abc-defg-hij", "https://us02web.zoom.us/j/123", "https://x.y/"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALLOWED = {200, 201, 202, 400, 404, 409, 413, 415, 422, 502}


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under ``node`` (the JSON Schema subset pydantic writes for CreateBot)."""
    if "anyOf" in node:
        return st.one_of([from_schema(option) for option in node["anyOf"]])
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        return st.integers(node.get("minimum"), node.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if node.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        return st.text(min_size=node.get("minLength", 0), max_size=node.get("maxLength", 50))
    if kind == "object" and "properties" not in node:  # a free-form mapping (a persona)
        return st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4)
    if kind == "object":
        properties = node.get("properties", {})
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {name: from_schema(properties[name]) for name in required},
            optional={
                name: from_schema(sub) for name, sub in properties.items() if name not in required
            },
        )
    raise AssertionError(f"schema construct not covered by the fuzz: {node}")


def _mistyped(body: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return {**body, field: value}


def _valid_bodies() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda body, url: {**body, "meeting_url": url}, from_schema(CREATE_SCHEMA), MEETINGS
    )


@FUZZ
@given(
    body=st.one_of(
        _valid_bodies(),
        from_schema(CREATE_SCHEMA),
        st.builds(
            _mistyped,
            from_schema(CREATE_SCHEMA),
            st.sampled_from(sorted(CREATE_SCHEMA["properties"])),
            JSON_VALUES,
        ),
        JSON_VALUES,
    )
)
def test_create_never_fails_with_5xx(api: Api, body: Any) -> None:
    """Any body gets a 201 or a clear 4xx (or 502 from Recall), never a crash."""
    answer = api.post(
        "/v1/bots", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert answer.status_code in ALLOWED, answer.text
    if answer.status_code >= 400:
        assert set(answer.json()) == {"error", "message"}


@FUZZ
@given(
    bot_id=st.one_of(st.text(min_size=1, max_size=300), st.uuids().map(str)),
    suffix=st.sampled_from(["", "/transcript", "/notes", "/minutes"]),
    limit=st.one_of(st.integers(), st.text(max_size=10)),
)
def test_reads_never_fail_with_5xx(api: Api, bot_id: str, suffix: str, limit: Any) -> None:
    """Any path id and query value is answered with data, 404 or 400."""
    answer = api.get(f"/v1/bots/{quote(bot_id, safe='')}{suffix}")
    assert answer.status_code in {200, 400, 404}, answer.text
    listed = api.get("/v1/bots", params={"limit": str(limit)})
    assert listed.status_code in {200, 400}


def test_fuzzed_creates_stored_only_well_formed_bots(api: Api) -> None:
    """After a fuzz run, every stored bot has a valid id, its session and its pointer."""
    test_create_never_fails_with_5xx(api)
    table = boto3.resource("dynamodb", endpoint_url=api.endpoint, region_name="us-east-1").Table(
        api.table_name
    )
    items = table.scan()["Items"]
    states = [i for i in items if i["sk"] == schema.STATE_SK]
    assert api.recall.created_ids, "the fuzz created no bot: valid bodies were not generated"
    assert len(states) == len(api.recall.created_ids)
    pointers = {i["pk"]: i for i in items if i["sk"] == "BOT"}
    for state in states:
        assert schema.is_valid_id(str(state["bot_id"]))
        pointer = pointers[schema.session_pk(str(state["session_id"]))]
        assert pointer["bot_id"] == state["bot_id"]
    agents = {i["pk"] for i in items if i["sk"] == schema.SESSION_AGENT_SK}
    for state in states:  # the relay finds each API-made bot by its session
        assert schema.session_pk(str(state["session_id"])) in agents
    unexpected = {str(i["sk"]).split("#")[0] for i in items} - {
        "STATE",
        "BOT",
        "CREATE",
        schema.SESSION_AGENT_SK,
    }
    assert not unexpected
