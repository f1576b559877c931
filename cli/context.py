"""What every ``voicebot`` command is passed: the per-invocation :class:`Context`.

Each command resolves what it needs (flag, then environment, then the deployed stack's
outputs and secrets) through the context, which reads the settings once and looks the
stack up at most once. The options that point it elsewhere (``--stack``, ``--table``) and
``--json`` are declared here, so every command spells them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import click

from cli import dev_profile
from cli.dev_profile import DevProfile
from cli.errors import AwsError, ConfigError
from cli.local_config import LOCAL_AWS_ENV
from cli.recall_api import RecallClient, base_url
from cli.settings import Settings
from cli.stack import AWS_FAILURES, Stack, describe_aws_error
from relay import tokens

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


@dataclass
class Context:
    """Per-invocation state: settings once, the stack looked up at most once."""

    settings: Settings
    stack_name: str
    #: ``--stack`` or ``VOICEBOT_STACK`` named the stack: the dev profile is not used.
    stack_named: bool = False
    _stacks: dict[str, Stack] = field(default_factory=dict)

    @property
    def stack(self) -> Stack:
        """The deployed stack named ``stack_name`` (no AWS call until an output is needed)."""
        return self._stacks.setdefault(self.stack_name, Stack(self.stack_name))

    def local(self) -> DevProfile | None:
        """The running ``voicebot dev`` stack, unless a stack or table was named."""
        if self.stack_named or self.settings.table_name:
            return None
        return dev_profile.read(self.settings.dev_profile)

    def table(self, flag: str | None) -> tuple[str, Table]:
        """The table by ``--table``, ``TABLE_NAME``, the running dev stack, or the stack's output.

        With no flag and a ``voicebot dev`` stack running, that stack's local table is used
        (said on stderr, so a script's stdout stays clean).
        """
        if not flag:
            local = self.local()
            if local is not None:
                click.echo(
                    f"(the local stack of voicebot dev, pid {local.pid}; "
                    "--stack or --table reads a deployed one)",
                    err=True,
                )
                resource = boto3.resource(
                    "dynamodb",
                    endpoint_url=local.dynamodb_url,
                    region_name=local.region,
                    aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                )
                return local.table_name, resource.Table(local.table_name)
        name = flag or self.settings.table_name
        if not name:
            try:
                name = self.stack.output("TableName")
            except AwsError as exc:
                raise AwsError(f"{exc} (for the table alone: --table or TABLE_NAME)") from None
        try:
            return name, boto3.resource("dynamodb").Table(name)
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot use table {name} ({describe_aws_error(exc)})") from None

    def token_secret(self) -> str:
        """``RELAY_TOKEN_SECRET``, or the stack's relay token secret; checked for length."""
        secret = self.settings.relay_token_secret
        if secret is None:
            arn = self.stack.output("RelayTokenSecretArn")
            secret = self.stack.secret(arn, "relay token")
        try:
            tokens.check_secret(secret)
        except tokens.TokenError as exc:
            raise ConfigError(str(exc)) from None
        return secret

    def recall_key(self, secret_arn: str | None) -> str:
        """``--recall-key-secret-arn``, ``RECALL_API_KEY`` or ``RECALL_API_KEY_SECRET_ARN``."""
        if secret_arn:
            return self.stack.secret(secret_arn, "Recall API key")
        if self.settings.recall_api_key:
            return self.settings.recall_api_key
        if self.settings.recall_key_secret_arn:
            return self.stack.secret(self.settings.recall_key_secret_arn, "Recall API key")
        raise ConfigError("no Recall API key: set RECALL_API_KEY or pass --recall-key-secret-arn")

    def recall_client(self, key: str, region: str) -> RecallClient:
        """A client for ``region`` (``RECALL_API_BASE`` overrides the URL), showing retries."""
        return RecallClient(
            api_key=key,
            region=region,
            base=base_url(region, self.settings.recall_api_base),
            on_retry=show_retry,
        )


def show_retry(status: int | None, delay: float, attempt: int, attempts: int) -> None:
    """Progress for a long wait: what Recall said and when we try again."""
    said = f"Recall answered {status}" if status is not None else "Recall was unreachable"
    click.echo(f"{said}; retrying in {delay:.1f} s (attempt {attempt} of {attempts})…", err=True)


pass_context = click.make_pass_decorator(Context)


def stack_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--stack NAME``: which deployed stack to read outputs from."""
    return click.option(
        "--stack",
        "stack_name",
        default=None,
        help="CloudFormation stack to read outputs from [env VOICEBOT_STACK; "
        "default RecallVoiceAgent].",
    )(command)


def use_stack(ctx: Context, stack_name: str | None) -> None:
    """Point ``ctx`` at ``--stack`` when given (before any output is read)."""
    if stack_name:
        ctx.stack_name = stack_name
        ctx.stack_named = True


def table_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--table NAME``: the DynamoDB table, instead of the stack's ``TableName``."""
    return click.option(
        "--table",
        default=None,
        help="DynamoDB table [env TABLE_NAME; default: the stack's TableName output].",
    )(command)


json_option = click.option("--json", "as_json", is_flag=True, help="Stable JSON for scripts.")
