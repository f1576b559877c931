"""Storage: the application's one DynamoDB table, built from ``storage.schema``.

Keys, the sparse ``by_day`` index and the TTL attribute come from :mod:`storage.schema`
(the one declaration the Lambda, the relay and the CLI also use), so the table cannot
drift from its readers and writers. On-demand billing (traffic is bursty and small),
point-in-time recovery on, retained on stack deletion by default, deletion protection
switchable, a stream of new and old images (the minutes pipeline's trigger). Grants are
explicit: the table and its one index by name, no wildcard.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from storage import schema

#: Item-level read/write actions; no Scan, no table management. TransactWriteItems needs
#: the per-item actions (Put/Update/ConditionCheck), which is what is granted here.
DATA_ACTIONS: Final = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
)


class Storage(Construct):
    """The single table. ``.table`` is the TableV2; use :meth:`grant_data` for access."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table_name: str | None,
        retain: bool,
        deletion_protection: bool,
    ) -> None:
        """Create the table; ``retain`` keeps it (and its data) when the stack is deleted."""
        super().__init__(scope, construct_id)
        attribute = dynamodb.AttributeType.STRING
        self.table = dynamodb.TableV2(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name=schema.PARTITION_KEY, type=attribute),
            sort_key=dynamodb.Attribute(name=schema.SORT_KEY, type=attribute),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=deletion_protection,
            # The minutes pipeline reads bot ends and connection ends from the stream
            # (infra/constructs/minutes.py); old images tell a new end from a rewrite.
            dynamo_stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=schema.BY_DAY_INDEX,
                    partition_key=dynamodb.Attribute(
                        name=schema.BY_DAY_PARTITION_KEY, type=attribute
                    ),
                    sort_key=dynamodb.Attribute(name=schema.BY_DAY_SORT_KEY, type=attribute),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            ],
        )

    @property
    def index_arn(self) -> str:
        """ARN of the ``by_day`` index (named, so grants need no ``index/*`` wildcard)."""
        return f"{self.table.table_arn}/index/{schema.BY_DAY_INDEX}"

    def grant_data(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read and write items of this table and query its index."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(DATA_ACTIONS),
            resource_arns=[self.table.table_arn, self.index_arn],
        )
