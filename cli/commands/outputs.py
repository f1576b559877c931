"""``voicebot outputs``: the deployed stack's outputs, whole, to paste into other commands."""

from __future__ import annotations

import click

from cli import render
from cli.context import Context, json_option, pass_context, stack_option, use_stack
from cli.errors import CliError


@click.command("outputs")
@stack_option
@json_option
@pass_context
def outputs(ctx: Context, stack_name: str | None, as_json: bool) -> None:
    """Print the deployed stack's outputs: URLs, table and the secrets' ARNs."""
    use_stack(ctx, stack_name)
    values = ctx.stack.outputs()
    if not values:
        raise CliError(f"stack {ctx.stack_name!r} has no outputs (is it still deploying?)")
    if as_json:
        click.echo(render.to_json(values))
        return
    width = max(len(key) for key in values)
    # Whole values, never shortened: they are pasted into other commands.
    click.echo("\n".join(f"{key.ljust(width)}  {values[key]}" for key in sorted(values)))
