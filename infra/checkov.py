"""Every checkov finding the app does not fix, skipped in the template with its reason.

checkov (``tests/infra/test_checkov.py``, ``make synth``) reads a resource's
``Metadata.checkov.skip`` list of ``{"id", "comment"}``; this module writes those lists,
in one place to audit, as ``infra/nag.py`` does for cdk-nag. A skip is either a decision
about a whole resource type (every log group: AWS-managed encryption) or about one
resource in one mode (the HTTP listener exists only without a custom domain). Findings that
could be fixed were fixed in the constructs (private origin, TLS with a domain, access
logs, Container Insights, PITR, 443-only egress).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aws_cdk import CfnResource
from constructs import IConstruct

if TYPE_CHECKING:
    from infra.stack import VoiceAgentStack

METADATA_KEY: Final = "checkov"

#: Decisions per CloudFormation type: every resource of the type gets these skips.
BY_TYPE: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "AWS::Logs::LogGroup": (
        (
            "CKV_AWS_158",
            "CloudWatch Logs encrypts every log group at rest with an AWS-owned key; these "
            "hold lifecycle lines, metrics and rejected flows, never tokens, keys or audio "
            "(the relay and the receiver refuse to log them), so a customer-managed key would "
            "add $1/month per key and a key policy without protecting anything more.",
        ),
    ),
    "AWS::SecretsManager::Secret": (
        (
            "CKV_AWS_149",
            "Encrypted with the account's aws/secretsmanager key; only this stack's roles are "
            "granted GetSecretValue, and a customer-managed key would add cost and a second "
            "policy to keep in step without narrowing who can read the value.",
        ),
    ),
    "AWS::Lambda::Function": (
        (
            "CKV_AWS_116",
            "A dead-letter queue applies only to asynchronous invocations. API Gateway invokes "
            "the webhook and control API functions synchronously (Recall retries every "
            "delivery without a 2xx for days; an API client sees its error); the minutes "
            "function is invoked by event source mappings, whose failures go to its own "
            "dead-letter queue (the stream's on-failure destination, the job queue's redrive).",
        ),
        (
            "CKV_AWS_117",
            "The functions call only AWS APIs (DynamoDB, Secrets Manager, SQS) and Recall and "
            "OpenAI, all over TLS; inside a VPC they would need a NAT gateway or interface "
            "endpoints (~$7-33/month each) for no reduction in exposure.",
        ),
        (
            "CKV_AWS_115",
            "Concurrency is bounded where requests enter: the HTTP API stage throttles the "
            "webhooks and, per route, the control API; the minutes function runs only as "
            "fast as its stream shard and job queue deliver. Reserved concurrency would take "
            "capacity from the account's pool and can reject Recall's bursts the stage admits.",
        ),
        (
            "CKV_AWS_173",
            "The environments hold names only (table, secret ARNs, queue URL, page URL, model "
            "name, log level); secrets are read from Secrets Manager at run time, and Lambda "
            "encrypts the variables at rest with its AWS-managed key.",
        ),
    ),
    "AWS::SQS::Queue": (
        (
            "CKV_AWS_27",
            "The minutes job queues are encrypted at rest with SQS-managed keys "
            "(SqsManagedSseEnabled, which this check does not read) and refuse non-TLS "
            "access; they carry bot and session ids only, so a customer-managed KMS key "
            "would add $1/month and a key policy without protecting anything more.",
        ),
    ),
    "AWS::SNS::Topic": (
        (
            "CKV_AWS_26",
            "The topic carries CloudWatch alarm notifications (alarm names, thresholds), no "
            "data; CloudWatch cannot publish to a topic under the AWS-managed SNS key, and a "
            "customer-managed key for it would cost more than the whole alarm set.",
        ),
    ),
}

#: Decisions for the webhook function.
WEBHOOK_FUNCTION: Final = (
    (
        "CKV_AWS_116",
        "API Gateway invokes the webhook function synchronously; a dead-letter queue "
        "applies only to asynchronous invocations, and Recall (Svix) retries every "
        "delivery that did not get a 2xx for days.",
    ),
    (
        "CKV_AWS_117",
        "The function calls only DynamoDB and Secrets Manager over their TLS endpoints; "
        "inside a VPC it would need a NAT gateway or interface endpoints (~$7-33/month "
        "each) for no reduction in exposure.",
    ),
    (
        "CKV_AWS_115",
        "Concurrency is bounded where requests enter: the HTTP API stage throttles to "
        "webhook_throttle_rate/burst; reserved concurrency would take capacity from the "
        "account's pool and can reject Recall's bursts that the stage admits.",
    ),
    (
        "CKV_AWS_173",
        "The environment holds names only (table, secret ARN, log level); the signing "
        "secret is read from Secrets Manager at run time, and Lambda encrypts the "
        "variables at rest with its AWS-managed key.",
    ),
)

#: Decisions for Lambda functions CDK adds for its own custom resources (e.g. the one that
#: empties the VPC's default security group at deploy time).
CDK_PROVIDER_FUNCTION: Final = tuple(
    (
        check,
        "A handler CDK adds for its own custom resource (it runs only when CloudFormation "
        "creates, updates or deletes that resource, e.g. emptying the VPC's default security "
        "group); it handles no application data, and a dead-letter queue, a VPC, a "
        "concurrency limit or a key of ours would change nothing about it.",
    )
    for check in ("CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_115", "CKV_AWS_173")
)


def skip_checkov_findings(stack: VoiceAgentStack) -> None:
    """Write every skip with its reason into the resources' template metadata."""
    webhook = stack.webhook_api.function.node.default_child
    for resource in _resources(stack):
        for check, reason in BY_TYPE.get(resource.cfn_resource_type, ()):
            skip(resource, check, reason)
        if resource.cfn_resource_type == "AWS::Lambda::Function":
            decisions = WEBHOOK_FUNCTION if resource is webhook else CDK_PROVIDER_FUNCTION
            for check, reason in decisions:
                skip(resource, check, reason)
    relay = stack.relay
    bucket = relay.node.find_child("AccessLogs")
    skip(
        bucket,
        "CKV_AWS_18",
        "This bucket receives the load balancer's access logs; logging its own access to "
        "itself would loop, and a second bucket would log only ELB's writes.",
    )
    skip(
        bucket,
        "CKV_AWS_21",
        "Access-log objects are written once and expire after 90 days; versioning would only "
        "keep deleted copies of logs.",
    )
    if not relay.settings.container_insights:
        skip(
            relay.cluster,
            "CKV_AWS_65",
            "Container Insights was switched off on purpose (-c relay_container_insights=false) "
            "to save its ~$11/month; the service's free CPU and memory metrics and the relay's "
            "own EMF metrics still drive scaling and alarms.",
        )
    distribution = stack.edge.distribution
    skip(
        distribution,
        "CKV_AWS_68",
        "A web ACL costs at least $5/month plus per-request fees, which dominates this idle "
        "deployment; every WebSocket needs a signed, expiring relay token and the relay caps "
        "sessions per process and per token subject.",
    )
    skip(
        distribution,
        "CKV_AWS_86",
        "Caching is disabled, so every viewer request reaches the load balancer, whose access "
        "logs (S3, 90 days) record it with the client address; CloudFront logs would "
        "duplicate them.",
    )
    if stack.settings.custom_domain is None:
        skip(
            distribution,
            "CKV_AWS_174",
            "Without a custom domain the distribution uses the default *.cloudfront.net "
            "certificate, whose security policy AWS fixes; with -c domain_name=... the stack "
            "sets TLSv1.2_2021 and this check passes.",
        )
        for check in ("CKV_AWS_2", "CKV_AWS_103"):
            skip(
                relay.listener,
                check,
                "Origin leg without a custom domain: the ALB is internal (no public address) "
                "and reached only through CloudFront's VPC origin, never the internet; no "
                "certificate can name *.elb.amazonaws.com. With -c domain_name=... the "
                "listener is HTTPS (TLS 1.2+) and this check passes.",
            )


def skip(construct: IConstruct, check: str, reason: str) -> None:
    """Add ``check`` with ``reason`` to the checkov skips of ``construct``'s resource."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    assert isinstance(resource, CfnResource), f"{construct.node.path} has no resource"
    current: dict[str, Any] = resource.get_metadata(METADATA_KEY) or {}
    skips = [s for s in current.get("skip", []) if s["id"] != check]
    skips.append({"id": check, "comment": reason})
    resource.add_metadata(METADATA_KEY, {"skip": skips})


def _resources(scope: IConstruct) -> list[CfnResource]:
    return [c for c in scope.node.find_all() if isinstance(c, CfnResource)]
