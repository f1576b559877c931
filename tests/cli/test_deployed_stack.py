"""Commands that read a deployed stack: CloudFormation outputs and secrets, on moto's server."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from relay import tokens
from tests.cli.conftest import RECALL_KEY, run_cli

MEETING = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc"
PAGE = "https://d111.cloudfront.net/"
STACK_TOKEN_SECRET = "t" * 40
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Deployed:
    """A stack on moto with the outputs and secrets the real one declares."""

    name: str
    table: str
    env: dict[str, str]
    relay_secret_arn: str
    webhook_secret_arn: str


def secrets_client(endpoint: str):
    return boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def deployed(dynamodb_endpoint: str, table_name: str) -> Deployed:
    """A CloudFormation stack whose outputs name a table, the agent page and two secrets."""
    secrets = secrets_client(dynamodb_endpoint)
    suffix = uuid.uuid4().hex[:8]
    relay_arn = secrets.create_secret(Name=f"relay-{suffix}", SecretString=STACK_TOKEN_SECRET)[
        "ARN"
    ]
    # The console's key/value editor stores JSON; the CLI takes the one string in it.
    webhook_arn = secrets.create_secret(
        Name=f"webhook-{suffix}", SecretString=json.dumps({"secret": WEBHOOK_SECRET})
    )["ARN"]
    outputs = {
        "AgentPageUrl": PAGE,
        "RelayUrl": "wss://d111.cloudfront.net/v1/realtime",
        "WebhookUrl": "https://abc.execute-api.us-east-1.amazonaws.com/webhooks/recall",
        "TableName": table_name,
        "RelayTokenSecretArn": relay_arn,
        "WebhookSecretArn": webhook_arn,
    }
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    name = f"VoiceAgent{suffix}"
    cloudformation = boto3.client(
        "cloudformation", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    )
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    env = {"AWS_ENDPOINT_URL": dynamodb_endpoint, "VOICEBOT_STACK": name}
    return Deployed(name, table_name, env, relay_arn, webhook_arn)


def test_create_uses_the_stacks_outputs_and_secret(deployed, fake_recall):
    """With a deployed stack, bot create needs only the Recall key and the meeting URL."""
    env = {**deployed.env, "RECALL_API_KEY": RECALL_KEY, "RECALL_API_BASE": fake_recall.url}
    result = run_cli(["bot", "create", "--meeting-url", MEETING, "--json"], env)

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    url = fake_recall.requests[0].body["output_media"]["camera"]["config"]["url"]
    assert url.startswith(PAGE + "#token=")
    claims = tokens.verify(parse_qs(urlsplit(url).fragment)["token"][0], STACK_TOKEN_SECRET)
    assert claims.sub == printed["session_id"]
    assert printed["recorded"] is True

    shown = run_cli(["bot", "show", printed["bot_id"], "--json"], deployed.env)
    assert shown.exit_code == 0, shown.output
    bot = json.loads(shown.stdout)["bot"]
    assert bot["session_id"] == printed["session_id"]
    assert bot["meeting_url"] == MEETING
    assert bot["region"] == "us-west-2"
    assert "status" not in bot  # only webhooks set status


def test_recall_key_from_secrets_manager(deployed, fake_recall, dynamodb_endpoint):
    """--recall-key-secret-arn reads the Recall key from Secrets Manager and sends it as is."""
    arn = secrets_client(dynamodb_endpoint).create_secret(
        Name=f"recall-{uuid.uuid4().hex[:8]}", SecretString="recall-key-from-secret"
    )["ARN"]
    env = {**deployed.env, "RECALL_API_BASE": fake_recall.url}
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--recall-key-secret-arn", arn], env
    )

    assert result.exit_code == 0, result.output
    assert fake_recall.requests[0].headers["authorization"] == "recall-key-from-secret"


def test_leave_goes_to_the_region_the_bot_was_created_in(deployed, fake_recall):
    """bot leave finds the bot's region in its record, so a bot in eu-central-1 is reached there."""
    env = {
        **deployed.env,
        "RECALL_API_KEY": RECALL_KEY,
        "RECALL_API_BASE": f"{fake_recall.url}/{{region}}",
    }
    created = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--region", "eu-central-1", "--json"], env
    )
    assert created.exit_code == 0, created.output
    bot_id = json.loads(created.stdout)["bot_id"]

    left = run_cli(["bot", "leave", bot_id], env)  # the table comes from the stack

    assert left.exit_code == 0, left.output
    assert fake_recall.requests[-1].path == f"/eu-central-1/api/v1/bot/{bot_id}/leave_call/"


def test_token_mint_uses_the_stacks_secret(deployed):
    """token mint with no RELAY_TOKEN_SECRET signs with the stack's relay token secret."""
    result = run_cli(["token", "mint", "--sub", "session-9", "--ttl", "120"], deployed.env)

    assert result.exit_code == 0, result.output
    claims = tokens.verify(result.stdout.strip(), STACK_TOKEN_SECRET)
    assert claims.sub == "session-9"
    assert claims.exp - claims.iat == 120


def test_send_sample_signs_with_the_stacks_webhook_secret(deployed, fake_recall):
    """send-sample without --secret signs with the stack's webhook secret, verifiably."""
    result = run_cli(["webhook", "send-sample", f"{fake_recall.url}/hook"], deployed.env)

    assert result.exit_code == 0, result.output
    [request] = fake_recall.requests
    body = json.dumps(request.body, separators=(",", ":"))
    event = Webhook(WEBHOOK_SECRET).verify(body, request.headers)
    assert event["event"] == "bot.in_call_recording"
    assert event["data"]["bot"]["id"] in result.stdout
    assert WEBHOOK_SECRET not in result.output
    assert request.headers["webhook-signature"] not in result.output


def test_empty_secret_says_fill_it_first(deployed, dynamodb_endpoint):
    """A stack whose relay token secret was never filled gives one line saying so."""
    secrets_client(dynamodb_endpoint).put_secret_value(
        SecretId=deployed.relay_secret_arn, SecretString=" "
    )
    result = run_cli(["token", "mint", "--sub", "s"], deployed.env)

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: the relay token secret {deployed.relay_secret_arn} is empty; fill it first"
    )


def test_unfilled_webhook_secret_says_what_to_do(deployed, dynamodb_endpoint):
    """A stack whose webhook secret is still the deploy-time placeholder says to fill it."""
    secrets_client(dynamodb_endpoint).put_secret_value(
        SecretId=deployed.webhook_secret_arn, SecretString="PLACEHOLDER-put-the-secret-here"
    )
    result = run_cli(["webhook", "send-sample", "http://127.0.0.1:9/hook"], deployed.env)

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: the stack's webhook secret {deployed.webhook_secret_arn} holds no whsec_ "
        "secret yet; put Recall's signing secret in it, or pass --secret"
    )
    assert "PLACEHOLDER" not in result.output


def test_missing_stack_names_it(deployed):
    """A stack that does not exist is named in one error line with what to do instead."""
    env = {**deployed.env, "VOICEBOT_STACK": "NoSuchStack"}
    result = run_cli(["bots"], env)

    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot read stack 'NoSuchStack' (ValidationError:")


def test_unusable_table_fails_before_recall_is_called(fake_recall, dynamodb_endpoint):
    """A table that cannot be written is reported before any bot is created."""
    env = {
        "RECALL_API_KEY": RECALL_KEY,
        "RECALL_API_BASE": fake_recall.url,
        "RELAY_TOKEN_SECRET": STACK_TOKEN_SECRET,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
    }
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--table", "missing"], env
    )

    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot use table missing (ResourceNotFoundException")
    assert fake_recall.requests == []


def test_bots_on_an_empty_table_says_so(deployed):
    """bots with nothing recorded prints one friendly line, and [] in JSON."""
    human = run_cli(["bots", "--days", "2"], deployed.env)
    as_json = run_cli(["bots", "--json"], deployed.env)

    assert human.exit_code == 0, human.output
    assert human.stdout.strip() == "no bots in the last 2 days"
    assert json.loads(as_json.stdout) == []


def test_outputs_prints_every_output_whole(deployed):
    """`voicebot outputs` prints each output once, whole (ARNs are pasted, never shortened)."""
    result = run_cli(["outputs"], deployed.env)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["TableName"] == deployed.table
    assert lines["RelayTokenSecretArn"] == deployed.relay_secret_arn
    assert lines["WebhookSecretArn"] == deployed.webhook_secret_arn
    as_json = run_cli(["outputs", "--json"], deployed.env)
    assert json.loads(as_json.stdout) == lines


def test_no_region_says_what_to_set():
    """On a machine with no AWS region, `bots` names AWS_REGION, `voicebot dev` and --table."""
    no_region = {"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "AWS_CONFIG_FILE": "/nonexistent"}
    result = run_cli(["bots"], no_region)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "no AWS region: set AWS_REGION" in line
    assert "voicebot dev" in line
    assert "--table" in line
