"""The DynamoDB table's one contract: key schema, time format, item shapes and updates.

Plain Python, no boto3, no CDK; it imports nothing of ours. Shared by the storage
construct (infra), the webhook Lambda, the relay's session records, the CLI's readers
and the local stack, so the table has exactly one definition:

* :mod:`storage.schema`: attribute names of the keys, key builders, the ``by_day`` index,
  the TTL attribute, and which ids may be part of a key;
* :mod:`storage.times`: the one fixed-width UTC time format of keys and ordered values;
* :mod:`storage.items`: the shape of every item kind, its builders, and who writes it how;
* :mod:`storage.updates`: one ``UpdateItem`` as a value, rendered the same for every writer.
"""
