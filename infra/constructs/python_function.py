"""The project's Python Lambda functions, built one way: arm64, Python 3.14, own log group and role.

Each function construct (webhook receiver, minutes, control API) calls
:func:`python_function` for the parts they share: a log group with its retention, a role
that may write to that log group only (instead of AWSLambdaBasicExecutionRole's every
group), and the function on the shipped runtime and architecture. What differs (memory,
timeout, environment, SnapStart, log format) is passed through. Construct ids stay
``FunctionLogs``, ``FunctionRole`` and ``Function`` in the caller's scope.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct


def python_function(
    scope: Construct,
    *,
    handler: str,
    code: lambda_.Code,
    role_description: str,
    log_retention: logs.RetentionDays,
    **function_props: Any,
) -> tuple[lambda_.Function, logs.LogGroup]:
    """The function and its log group (see the module docstring)."""
    log_group = logs.LogGroup(
        scope, "FunctionLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
    )
    role = iam.Role(
        scope,
        "FunctionRole",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        "Function",
        runtime=lambda_.Runtime.PYTHON_3_14,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=code,
        role=role,
        log_group=log_group,
        **function_props,
    )
    return function, log_group
