"""The ``voicebot token`` group: ``token mint`` prints a relay token (that is its purpose)."""

from __future__ import annotations

import click

from cli.context import Context, pass_context, stack_option, use_stack
from relay import tokens


@click.group()
def token() -> None:
    """Relay tokens."""


@token.command("mint")
@click.option("--sub", required=True, help="Session or bot id the token is bound to.")
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    default=tokens.DEFAULT_TTL_SECONDS,
    show_default=True,
    help="Lifetime, seconds.",
)
@stack_option
@pass_context
def token_mint(ctx: Context, sub: str, ttl: int, stack_name: str | None) -> None:
    """Print a relay token (secret from RELAY_TOKEN_SECRET or the stack's secret)."""
    use_stack(ctx, stack_name)
    secret = ctx.token_secret()
    try:
        click.echo(tokens.mint(secret, sub, ttl))
    except tokens.TokenError as exc:
        raise click.BadParameter(str(exc), param_hint="'--sub'") from None
