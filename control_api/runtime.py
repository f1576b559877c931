"""What requests need, built once per process: settings, secrets, the table; table calls.

:class:`RuntimeResolver` builds the :class:`Runtime` on first use (a configuration error
is a 503); :func:`aws_call` turns an unreachable or refusing table into a 503 and
:func:`secret` a secret not filled in into one, so operations raise only
:class:`~control_api.errors.ApiError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from control_api.errors import ApiError
from control_api.settings import ConfigError, Secrets, Settings, load_settings

#: Recall calls inside one API request stop well before API Gateway's 30 s.
RECALL_MAX_WAIT_SECONDS: Final = 12.0

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from cli.bot_records import BotRecords


@dataclass(frozen=True, slots=True)
class Runtime:
    """What requests need, built once per process."""

    settings: Settings
    secrets: Secrets
    table: Table
    recall_transport: Any = None  # an httpx transport, for tests; None: the network


class RuntimeResolver:
    """Builds the runtime on first use (thread-safe)."""

    def __init__(self, factory: Callable[[], Runtime]) -> None:
        """``factory`` builds the runtime."""
        self._factory = factory
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        """The runtime (a configuration error is a 503)."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    try:
                        self._runtime = self._factory()
                    except ConfigError as exc:
                        raise ApiError(503, "not_configured", str(exc)) from None
        return self._runtime


def default_runtime(settings: Settings | None = None) -> Runtime:
    """The deployed runtime: settings from the environment, a boto3 table."""
    import boto3

    settings = settings or load_settings()
    table = boto3.resource("dynamodb").Table(settings.table_name)
    return Runtime(settings=settings, secrets=Secrets(settings), table=table)


def bot_records(runtime: Runtime) -> BotRecords:
    from cli.bot_records import BotRecords

    return BotRecords(runtime.table)


def aws_call(call: Callable[..., Any], *args: Any) -> Any:
    """Run a table call; unreachable or refusing AWS is a 503."""
    from cli.errors import AwsError

    try:
        return call(*args)
    except AwsError as exc:
        raise ApiError(503, "table_unavailable", str(exc)) from None
    except Exception as exc:
        import botocore.exceptions

        if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
            raise ApiError(503, "table_unavailable", type(exc).__name__) from None
        raise


def secret_value(read: Callable[[], str]) -> str:
    try:
        return read()
    except ConfigError as exc:
        raise ApiError(503, "not_configured", str(exc)) from None
