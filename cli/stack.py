"""The deployed stack as the CLI sees it: CloudFormation outputs and Secrets Manager secrets.

Owns finding ``WebhookUrl``, ``RelayUrl``, ``AgentPageUrl``, ``TableName`` and the secret
ARNs of a deployed stack, and reading a secret's value. Lookups are lazy and memoized:
a command that got everything from flags never calls AWS. Every AWS failure becomes one
``AwsError`` line that says what to pass instead. Secret values are returned, never shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import boto3
import botocore.exceptions

from cli.errors import AwsError, ConfigError
from functions.webhooks.settings import secret_text

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

#: What each output stands in for on the command line, for the error message.
FLAG_FOR_OUTPUT: Final[Mapping[str, str]] = {
    "AgentPageUrl": "--page-url",
    "TableName": "--table (or TABLE_NAME)",
    "RelayTokenSecretArn": "RELAY_TOKEN_SECRET",
    "WebhookSecretArn": "--secret (or RECALL_WEBHOOK_SECRET)",
}

#: AWS errors that mean "no usable credentials/endpoint", not "a bug".
AWS_FAILURES: Final = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
)


def describe_aws_error(exc: Exception) -> str:
    """A one-line account of an AWS failure (no request ids, no tracebacks)."""
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return (
            "no AWS region: set AWS_REGION (or a profile's region), "
            "or run `voicebot dev` for the local stack"
        )
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials: set AWS_PROFILE or run `aws configure` (or `aws sso login`)"
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        message = error.get("Message", "")
        return f"{code}: {message}".rstrip(": ")
    return str(exc) or type(exc).__name__


@dataclass
class Stack:
    """A deployed stack, looked up at most once."""

    name: str
    cloudformation: Callable[[], CloudFormationClient] = lambda: boto3.client("cloudformation")
    secretsmanager: Callable[[], SecretsManagerClient] = lambda: boto3.client("secretsmanager")
    _outputs: dict[str, str] | None = None

    def outputs(self) -> dict[str, str]:
        """Every output of the stack, by key.

        Raises:
            AwsError: no credentials, no such stack, or CloudFormation unreachable.
        """
        if self._outputs is None:
            try:
                answer = self.cloudformation().describe_stacks(StackName=self.name)
            except AWS_FAILURES as exc:
                raise AwsError(
                    f"cannot read stack {self.name!r} ({describe_aws_error(exc)}); "
                    "deploy it, name it with --stack/VOICEBOT_STACK, or pass the values as flags"
                ) from None
            stacks = answer.get("Stacks", [])
            outputs = stacks[0].get("Outputs", []) if stacks else []
            self._outputs = {
                o["OutputKey"]: o["OutputValue"]
                for o in outputs
                if "OutputKey" in o and "OutputValue" in o
            }
        return self._outputs

    def output(self, key: str) -> str:
        """One output's value.

        Raises:
            AwsError: the stack cannot be read.
            ConfigError: the stack has no such output.
        """
        value = self.outputs().get(key)
        if not value:
            instead = FLAG_FOR_OUTPUT.get(key)
            hint = f"; pass {instead} instead" if instead else ""
            raise ConfigError(f"stack {self.name!r} has no output {key}{hint}")
        return value

    def secret(self, arn: str, what: str) -> str:
        """The value of the secret ``arn`` (``what`` names it in errors).

        Raises:
            AwsError: unreadable, or still empty (the user has not filled it yet).
        """
        try:
            answer = self.secretsmanager().get_secret_value(SecretId=arn)
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot read the {what} secret ({describe_aws_error(exc)})") from None
        raw = answer.get("SecretString") or ""
        value = secret_text(raw).strip()
        if not value:
            raise AwsError(f"the {what} secret {arn} is empty; fill it first")
        return value
