"""The control API: bots created, dismissed and inspected over authenticated HTTP.

Other software drives the product through it without AWS credentials for the table or a
Recall key on a laptop: routes under ``/v1`` on the stack's HTTP API, IAM (SigV4) auth,
the Recall key and the relay token key read from Secrets Manager. It reuses the CLI's
own pieces, so both paths do the same thing: ``cli.bot_request`` (the create-bot body
and its checks), ``cli.recall_api`` (Recall's API with retries), ``cli.bot_records`` (the
table reads and the bot record), ``relay.tokens`` (the token format). Modules:

- ``settings``: the only reader of the environment; secrets resolved once.
- ``models``: the request and response shapes (the OpenAPI document comes from them).
- ``idempotency``: ``Idempotency-Key`` on create, a conditional write per key.
- ``app``: the FastAPI app, its routes, one error mapping, the Lambda handler.
"""
