"""One ``UpdateItem`` as a value: which attributes to set, which only where absent, and when.

Every partial write to the table (the webhook's bot status, the CLI's bot record, the
relay's connection summary) is an :class:`Update` rendered by :meth:`Update.request`, so
all of them name every attribute through a placeholder (``#a0``; no reserved-word
surprises such as ``status`` or ``region``) and pass values as plain Python for the
writer to serialize (boto3's ``TypeSerializer``; this package imports no boto3).

It refuses to decide what is written: the item shapes in :mod:`storage.items` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from storage import schema


class UpdateRequest(TypedDict):
    """``UpdateItem`` parameters (without ``TableName``), values still plain Python."""

    Key: dict[str, str]
    UpdateExpression: str
    ExpressionAttributeNames: dict[str, str]
    ExpressionAttributeValues: dict[str, Any]
    ConditionExpression: NotRequired[str]


@dataclass(frozen=True, slots=True)
class Update:
    """SET ``assign`` always, ``assign_if_absent`` only where the item lacks them.

    With ``only_if_newer`` (an attribute of ``assign``), the write happens only if the
    stored value is absent or sorts before the new one (DynamoDB answers
    ``ConditionalCheckFailedException`` otherwise): how a value never moves backwards.
    """

    pk: str
    sk: str
    assign: Mapping[str, object]
    assign_if_absent: Mapping[str, object] = field(default_factory=dict)
    only_if_newer: str | None = None

    def request(self) -> UpdateRequest:
        """The ``UpdateItem`` parameters for this update.

        Raises:
            ValueError: nothing to set, an attribute in both maps, or ``only_if_newer``
                not among ``assign``.
        """
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses: list[str] = []
        for i, (attribute, value) in enumerate(self.assign.items()):
            names[f"#a{i}"], values[f":v{i}"] = attribute, value
            clauses.append(f"#a{i} = :v{i}")
        for i, (attribute, value) in enumerate(self.assign_if_absent.items(), len(clauses)):
            if attribute in self.assign:
                raise ValueError(f"{attribute!r} is both set and set-if-absent")
            names[f"#a{i}"], values[f":v{i}"] = attribute, value
            clauses.append(f"#a{i} = if_not_exists(#a{i}, :v{i})")
        if not clauses:
            raise ValueError("an update sets at least one attribute")
        request: UpdateRequest = {
            "Key": {schema.PARTITION_KEY: self.pk, schema.SORT_KEY: self.sk},
            "UpdateExpression": "SET " + ", ".join(clauses),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if self.only_if_newer is not None:
            if self.only_if_newer not in self.assign:
                raise ValueError(f"only_if_newer={self.only_if_newer!r} is not set by the update")
            i = list(self.assign).index(self.only_if_newer)
            request["ConditionExpression"] = f"attribute_not_exists(#a{i}) OR #a{i} < :v{i}"
        return request
