"""Fixtures for the control API: the real app on a loopback port, moto's table, a fake Recall.

The app runs as deployed except for where its dependencies live: its table is moto's
server (over HTTP), Recall is ``tests/cli/fake_recall.py`` on loopback, and secrets are
inline. API Gateway's IAM check happens before the function runs; the function only
reads the caller's identity, which these tests send in the API Gateway event shape when
they need two callers (``tests/control_api/test_lambda.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from control_api.app import create_app
from control_api.runtime import Runtime
from control_api.settings import Secrets, Settings
from tests.cli.conftest import RECALL_KEY, TOKEN_SECRET
from tests.cli.fake_recall import FakeRecall
from tests.conftest import TIMEOUT
from tests.webhooks.conftest import serve_in_thread

PAGE = "https://agent.example.com/"


@dataclass
class Api:
    """A running control API: its URL, its table, and the fake Recall behind it."""

    url: str
    table_name: str
    endpoint: str
    recall: FakeRecall
    http: httpx.Client

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(self.url + path, **kwargs)


def settings_for(table_name: str, recall: FakeRecall, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "table_name": table_name,
        "agent_page_url": PAGE,
        "recall_api_key": RECALL_KEY,
        "relay_token_secret": TOKEN_SECRET,
        "recall_api_base": f"{recall.url}/{{region}}",
        **changes,
    }
    return Settings(**values)


@pytest.fixture
def api(dynamodb_endpoint: str, table_name: str, fake_recall: FakeRecall) -> Iterator[Api]:
    """The control API on a loopback port, over moto's table and the fake Recall."""
    settings = settings_for(table_name, fake_recall)
    table = boto3.resource(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    ).Table(table_name)

    def runtime() -> Runtime:
        return Runtime(settings=settings, secrets=Secrets(settings), table=table)

    with (
        serve_in_thread(create_app(runtime)) as url,
        httpx.Client(timeout=TIMEOUT, trust_env=False) as http,
    ):
        yield Api(url, table_name, dynamodb_endpoint, fake_recall, http)
