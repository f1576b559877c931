"""The DynamoDB table's key schema and item shapes: plain Python, no boto3, no CDK.

Shared by the storage construct (infra), the webhook Lambda, the relay's session records,
the CLI's readers and the local stack, so the table has exactly one definition.
"""
