"""The table: keys, index and TTL from storage.schema; on demand; PITR; kept on delete."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template

from storage import schema
from tests.infra.conftest import Synthesized


def test_table_keys_index_and_ttl_come_from_the_schema(template: Template) -> None:
    """Every writer's key names exist on the deployed table, as storage.schema declares."""
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "KeySchema": [
                {"AttributeName": schema.PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.SORT_KEY, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_with(
                [
                    {"AttributeName": name, "AttributeType": kind}
                    for name, kind in schema.KEY_ATTRIBUTE_TYPES.items()
                ]
            ),
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {
                        "IndexName": schema.BY_DAY_INDEX,
                        "KeySchema": [
                            {"AttributeName": schema.BY_DAY_PARTITION_KEY, "KeyType": "HASH"},
                            {"AttributeName": schema.BY_DAY_SORT_KEY, "KeyType": "RANGE"},
                        ],
                    }
                )
            ],
            "TimeToLiveSpecification": {
                "AttributeName": schema.TTL_ATTRIBUTE,
                "Enabled": True,
            },
        },
    )


def test_table_is_on_demand_with_point_in_time_recovery(template: Template) -> None:
    """The table costs nothing idle and can be restored to any second of the last 35 days."""
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "Replicas": [
                Match.object_like(
                    {
                        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                        "DeletionProtectionEnabled": True,
                    }
                )
            ],
        },
    )


def test_table_is_retained_by_default_and_destroyable_by_context(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """Deleting the stack keeps the data; `-c retain_data=false` alone makes it destroyable."""
    default = synthesized.only("AWS::DynamoDB::GlobalTable")
    assert default["DeletionPolicy"] == "Retain"
    assert default["Properties"]["Replicas"][0]["DeletionProtectionEnabled"] is True
    assert default["UpdateReplacePolicy"] == "Retain"
    switched = custom.only("AWS::DynamoDB::GlobalTable")
    assert switched["DeletionPolicy"] == "Delete"
    replica = switched["Properties"]["Replicas"][0]
    # No deletion protection left on a table CloudFormation must delete (`cdk destroy`).
    assert replica.get("DeletionProtectionEnabled", False) is False
