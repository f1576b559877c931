"""``voicebot bots`` and ``voicebot transcript``: the recent bots, and what was said with one."""

from __future__ import annotations

import click

from cli import render
from cli.bot_records import BotRecords
from cli.context import Context, json_option, pass_context, stack_option, table_option, use_stack
from cli.errors import CliError
from cli.via_api import via_api


@click.command("bots")
@via_api("bots")
@click.option(
    "--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True, help="How many."
)
@click.option(
    "--days", type=click.IntRange(min=0, max=366), default=30, show_default=True, help="Look back."
)
@table_option
@stack_option
@json_option
@pass_context
def bots(
    ctx: Context, limit: int, days: int, table: str | None, stack_name: str | None, as_json: bool
) -> None:
    """List recent bots, newest first, with their state."""
    use_stack(ctx, stack_name)
    _, table_resource = ctx.table(table)
    now = render.now_utc()
    found = BotRecords(table_resource).recent(limit, now, lookback_days=days)
    if as_json:
        click.echo(render.to_json([render.public(b) for b in found]))
        return
    if not found:
        click.echo(f"no bots in the last {days} days")
        return
    click.echo(render.bots_table(found, now))


@click.command("transcript")
@via_api("transcript")
@click.argument("bot_id")
@table_option
@stack_option
@json_option
@pass_context
def transcript(
    ctx: Context, bot_id: str, table: str | None, stack_name: str | None, as_json: bool
) -> None:
    """Show what was said with a bot, turn by turn, in full.

    BOT_ID is a bot id, or the agent page's id that `voicebot dev` prints (dev-…).
    """
    use_stack(ctx, stack_name)
    name, table_resource = ctx.table(table)
    details = BotRecords(table_resource).details(bot_id)
    if details is None:
        raise CliError(f"no bot {bot_id} in table {name}")
    if as_json:
        click.echo(render.to_json([render.public(t) for t in details.turns]))
        return
    if not details.turns:
        click.echo(f"no turns recorded for {bot_id} yet")
        return
    click.echo(render.transcript_text(details.turns))
