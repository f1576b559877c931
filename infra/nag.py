"""Every cdk-nag acknowledgment of the app, each with the reason a reviewer can check.

cdk-nag 3.x runs as a CDK validation plugin (``infra/app.py``); any error-level finding
not acknowledged here fails ``cdk synth`` and the infra tests. Findings that could be
fixed were fixed in the constructs (PITR, Python 3.14, access logs, own Lambda role,
explicit table grants, ...); what remains is listed here, in one place to audit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from infra.stack import VoiceAgentStack


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` on ``scope`` and its children (plugin-qualified id)."""
    qualified = f"AwsSolutions::{rule}" if rule.startswith("AwsSolutions-") else rule
    Validations.of(scope).acknowledge(Acknowledgment(id=qualified, reason=reason))


def acknowledge_findings(stack: VoiceAgentStack) -> None:
    """Acknowledge the findings that are by design, on the narrowest construct."""
    _ack(
        stack.webhook_api.api,
        "AwsSolutions-APIG4",
        "Recall.ai (Svix) cannot present IAM, JWT or Lambda-authorizer credentials; every "
        "delivery is authenticated inside the function by its Standard Webhooks HMAC "
        "signature over the raw body with a 5-minute timestamp tolerance, and /healthz "
        "reveals nothing.",
    )
    _ack(
        stack.webhook_api.function,
        "Annotation::@aws-cdk/aws-lambda:snapStartRequirePublish",
        "SnapStart applies to published versions only, and the function is served only "
        "through the `live` alias of `current_version`, which CDK publishes on every change.",
    )
    for secret in (
        stack.secrets.recall_webhook,
        stack.secrets.openai_api_key,
        stack.secrets.recall_api_key,
    ):
        _ack(
            secret,
            "AwsSolutions-SMG4",
            "Third-party credential (Recall signing secret / OpenAI or Recall API key): it can "
            "only be "
            "rotated at the issuer, then put here by a person; a rotation Lambda has nothing to "
            "call. The webhook secret accepts several space-separated values for overlap.",
        )
    _ack(
        stack.secrets.tool_signing,
        "AwsSolutions-SMG4",
        "The tool signing key is shared with the operator's own tool endpoints, which verify "
        "with it; rotating it automatically would break them until they are updated. Rotate "
        "it deliberately (a new value here, then at the endpoints, then restart the relay).",
    )
    _ack(
        stack.secrets.relay_token,
        "AwsSolutions-SMG4",
        "The relay token key signs short-lived relay tokens (minutes to hours); an automatic "
        "rotation would invalidate every token handed to a bot in the middle of a meeting. "
        "Rotate it deliberately (put a new random value, restart the relay) when needed.",
    )
    _ack(
        stack.control_api.recall_api_key,
        "AwsSolutions-SMG4",
        "Third-party credential (the Recall API key): it can only be rotated in Recall's "
        "dashboard, then put here by a person; a rotation Lambda has nothing to call.",
    )
    api = _logical_id(stack.webhook_api.api)
    _ack(
        stack.control_api.invoke_policy,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:"
        f"<AWS::AccountId>:<{api}>/$default/*/v1/*]",
        "The policy is what a control API client attaches: any method on any /v1 path of this "
        "one API and stage (the API's own routes; Recall's webhook path is not under /v1). "
        "Narrower grants per route can be written by hand from docs/control-api.md.",
    )
    if stack.minutes.webhook_secret is not None:
        _ack(
            stack.minutes.webhook_secret,
            "AwsSolutions-SMG4",
            "The minutes delivery key is shared with the user's own endpoint, which verifies "
            "with it; an automatic rotation would make that endpoint reject every delivery "
            "until someone copies the new value over. Rotate it deliberately, with the user.",
        )
    _acknowledge_relay(stack)
    _acknowledge_edge(stack)


def _logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id cdk-nag prints inside ``<...>`` in finding ids."""
    stack = Stack.of(construct)
    element = construct.node.default_child
    assert isinstance(element, CfnElement)
    return str(stack.resolve(stack.get_logical_id(element)))


def _acknowledge_relay(stack: VoiceAgentStack) -> None:
    relay = stack.relay
    cluster = _logical_id(relay.cluster)
    _ack(
        relay.task_definition.task_role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:"
        f"task/<{cluster}>/*]",
        "ecs:GetTaskProtection/UpdateTaskProtection/DescribeTasks for the relay's own task "
        "(bounded scale-in protection; learning that ECS is stopping it): a task's ARN "
        "exists only at run time, so the resource is scoped to tasks of this cluster, the "
        "narrowest ARN IAM can express.",
    )
    _ack(
        relay.task_definition.task_role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:"
        f"service/<{cluster}>/*]",
        "ecs:DescribeServices for the relay's own service (is its deployment still the "
        "primary one?): the service's name cannot appear in its own task role (the service "
        "depends on the role), so the resource is this cluster's services; the cluster holds "
        "only the relay service, and the action is read-only.",
    )
    execution_role = relay.task_definition.execution_role
    assert execution_role is not None
    _ack(
        execution_role,
        "AwsSolutions-IAM5[Resource::*]",
        "CDK's ECS execution role: ecr:GetAuthorizationToken supports no resource-level "
        "scoping (AWS requires '*'); image pulls, log writes and secret reads are scoped to "
        "this image repository, log group and the two secrets.",
    )
    _ack(
        relay.task_definition,
        "AwsSolutions-ECS2",
        "Only non-secret configuration is in plain environment variables (port, model names, "
        "limits, drain time, table name, metrics names, log level); the OpenAI key and the "
        "token key arrive as ECS secrets from Secrets Manager, which tests/infra asserts.",
    )
    if not stack.settings.relay.container_insights:
        _ack(
            relay.cluster,
            "AwsSolutions-ECS4",
            "Container Insights was switched off on purpose (-c relay_container_insights=false) to "
            "save its ~$11/month of metrics; the service's CPU and memory utilization (free "
            "ECS metrics) and the relay's own EMF metrics still drive scaling and alarms.",
        )
    _ack(
        relay.node.find_child("AccessLogs"),
        "AwsSolutions-S1",
        "This bucket receives the load balancer's access logs; logging its own access to "
        "itself would loop, and a second bucket for it would log only the ELB delivery "
        "service's writes.",
    )


def _acknowledge_edge(stack: VoiceAgentStack) -> None:
    distribution = stack.edge.distribution
    _ack(
        distribution,
        "AwsSolutions-CFR3",
        "Caching is disabled, so every viewer request reaches the load balancer, whose "
        "access logs (S3, 90 days) record it with the client address from X-Forwarded-For; "
        "CloudFront standard logs would duplicate them.",
    )
    if stack.settings.custom_domain is None:
        _ack(
            distribution,
            "AwsSolutions-CFR4",
            "Without a custom domain the distribution uses the default *.cloudfront.net "
            "certificate, whose security policy AWS fixes (TLSv1 allowed) and nobody can "
            "change; with -c domain_name=... the stack sets TLSv1.2_2021 and this clears.",
        )
    if stack.settings.custom_domain is None:
        _ack(
            distribution,
            "AwsSolutions-CFR5",
            "Without a custom domain the origin leg is HTTP (no certificate can name "
            "*.elb.amazonaws.com), but it runs inside CloudFront's VPC-origin connection to an "
            "internal load balancer with no public address, never over the internet; the rule "
            "fires for any HTTP origin. With -c domain_name=... the origin leg is HTTPS.",
        )
    _ack(
        distribution,
        "AwsSolutions-CFR1",
        "Recall.ai meeting bots run from several AWS regions and join meetings worldwide; a "
        "geographic allow-list would break legitimate bots, and every relay connection "
        "already needs a signed, expiring relay token.",
    )
    _ack(
        distribution,
        "AwsSolutions-CFR2",
        "A web ACL costs at least $5/month plus per-request fees, which dominates this idle "
        "deployment; every WebSocket needs a signed relay token and the relay caps sessions "
        "per process and per token subject. Add WAF here if the deployment is exposed more.",
    )
