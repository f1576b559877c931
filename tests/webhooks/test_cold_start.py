"""What importing the handler module does, observed in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from functions.webhooks.settings import ENV_VARS
from tests.conftest import ROOT, TIMEOUT

SPY_IMPORT = """
import json, os, sys
read = set()
real = os.environ
class Spy(dict):
    def __getitem__(self, key):
        read.add(key)
        return real[key]
    def get(self, key, default=None):
        read.add(key)
        return real.get(key, default)
    def __contains__(self, key):
        read.add(key)
        return key in real
os.environ = Spy(real)
os.getenv = lambda key, default=None: (read.add(key), real.get(key, default))[1]
import functions.webhooks.app
heavy = [m for m in ("boto3", "botocore", "aws_lambda_powertools", "mangum") if m in sys.modules]
print(json.dumps({"read": sorted(read), "heavy": heavy}))
"""

PRIME = """
import json, sys
from functions.webhooks import app
from functions.webhooks.payloads import Envelope, StatusData, TranscriptData, ParticipantEventData
models = (Envelope, StatusData, TranscriptData, ParticipantEventData)
before = any(m.__pydantic_complete__ for m in models)
app.prime()
after = all(m.__pydantic_complete__ for m in models)
print(json.dumps({"built_before": before, "built_after": after, "boto3": "boto3" in sys.modules}))
"""


def run_python(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter with our configuration set; its JSON answer."""
    env = {**os.environ, "TABLE_NAME": "t", "RECALL_WEBHOOK_SECRET_ARN": "arn:x"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        check=True,
    )
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def test_import_reads_no_configuration_and_loads_no_aws_sdk():
    """Importing the handler reads none of our variables and loads no boto3 or Powertools."""
    answer = run_python(SPY_IMPORT)
    assert not set(answer["read"]) & ENV_VARS
    assert answer["heavy"] == []


def test_prime_builds_models_without_configuration():
    """Event models are built on first use, or ahead of it by prime() (the SnapStart hook)."""
    answer = run_python(PRIME)
    assert answer == {"built_before": False, "built_after": True, "boto3": True}
