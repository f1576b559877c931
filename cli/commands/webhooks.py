"""The ``voicebot webhook`` group: ``webhook send-sample`` POSTs a signed sample delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from cli.context import Context, pass_context, stack_option, use_stack
from cli.errors import ConfigError
from cli.sample_webhook import send, signed_sample


@click.group()
def webhook() -> None:
    """Recall webhooks."""


@webhook.command("send-sample")
@click.argument("url")
@click.option(
    "--secret",
    default=None,
    help="whsec_ signing secret [env RECALL_WEBHOOK_SECRET; default: the stack's secret].",
)
@click.option("--bot-id", default=None, help="Bot id in the sample (default: a new uuid).")
@stack_option
@pass_context
def webhook_send_sample(
    ctx: Context, url: str, secret: str | None, bot_id: str | None, stack_name: str | None
) -> None:
    """POST a signed sample bot.in_call_recording delivery to URL."""
    use_stack(ctx, stack_name)
    if not url.startswith(("https://", "http://")):
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="URL")
    secret = secret or ctx.settings.webhook_secret
    if secret is None:
        arn = ctx.stack.output("WebhookSecretArn")
        # The stored value may list several secrets during rotation; any one signs.
        secret = ctx.stack.secret(arn, "webhook").split()[0]
        if not secret.startswith("whsec_"):
            raise ConfigError(
                f"the stack's webhook secret {arn} holds no whsec_ secret yet; put Recall's "
                "signing secret in it, or pass --secret"
            )
    delivery = signed_sample(secret, datetime.now(UTC), bot_id=bot_id)
    status = send(url, delivery)
    click.echo(f"delivered {delivery.webhook_id} for bot {delivery.bot_id}: HTTP {status}")
