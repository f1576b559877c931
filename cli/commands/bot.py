"""The ``voicebot bot`` group: create (:mod:`cli.commands.bot_create`), leave, show, minutes."""

from __future__ import annotations

import json

import click

from cli import render
from cli.bot_records import BotRecords
from cli.commands.bot_create import bot_create
from cli.context import Context, json_option, pass_context, stack_option, table_option, use_stack
from cli.errors import AwsError, CliError, ConfigError
from cli.meeting_exit import Exit, leave_meeting
from cli.recall_api import REGION_BASE_URLS
from cli.via_api import via_api


@click.group()
def bot() -> None:
    """Create, inspect and dismiss meeting bots."""


bot.add_command(bot_create)


@bot.command("leave")
@via_api("leave")
@click.argument("bot_id")
@click.option(
    "--region",
    type=click.Choice(list(REGION_BASE_URLS)),
    default=None,
    help="Recall region [default: the bot's recorded region, else RECALL_REGION].",
)
@click.option("--recall-key-secret-arn", default=None, help="Read the Recall key from this secret.")
@table_option
@stack_option
@pass_context
def bot_leave(
    ctx: Context,
    bot_id: str,
    region: str | None,
    recall_key_secret_arn: str | None,
    table: str | None,
    stack_name: str | None,
) -> None:
    """Make a bot leave its meeting (a bot created with --minutes-to-chat posts its
    minutes in the meeting chat first)."""
    use_stack(ctx, stack_name)
    # Bots live in one region; the one recorded at creation is the right one. Without
    # an explicit table, a stack that cannot be read just means "no record".
    explicit = bool(table or ctx.settings.table_name)
    table_resource = None
    state = None
    try:
        _, table_resource = ctx.table(table)
        state = BotRecords(table_resource).state(bot_id)
    except (AwsError, ConfigError):
        if explicit and region is None:
            raise
    if region is None:
        recorded = state.get("region") if state else None
        region = recorded if isinstance(recorded, str) else None
    region = region or ctx.settings.recall_region
    key = ctx.recall_key(recall_key_secret_arn)
    with ctx.recall_client(key, region) as recall:
        how = leave_meeting(
            recall, bot_id, table=table_resource, state=dict(state) if state else None, reason="cli"
        )
    if how is Exit.AFTER_MINUTES:
        click.echo(f"bot {bot_id} posts its minutes in the chat, then leaves ({region})")
    else:
        click.echo(f"bot {bot_id} is leaving its call ({region})")


@bot.command("show")
@via_api("show")
@click.argument("bot_id")
@table_option
@stack_option
@json_option
@pass_context
def bot_show(
    ctx: Context, bot_id: str, table: str | None, stack_name: str | None, as_json: bool
) -> None:
    """Show a bot's state, event timeline, relay sessions and transcript."""
    use_stack(ctx, stack_name)
    name, table_resource = ctx.table(table)
    details = BotRecords(table_resource).details(bot_id)
    if details is None:
        raise CliError(f"no bot {bot_id} in table {name}")
    if as_json:
        click.echo(
            render.to_json(
                {
                    "bot": render.public(details.state),
                    "events": [render.public(e) for e in details.events],
                    "connections": [render.public(c) for c in details.connections],
                    "turns": [render.public(t) for t in details.turns],
                    "notes": [render.public(n) for n in details.notes],
                }
            )
        )
        return
    now = render.now_utc()
    click.echo(
        render.bot_report(details.state, details.events, details.connections, details.turns, now)
        + render.notes_section(details.notes, now)
    )


@bot.command("minutes")
@via_api("minutes")
@click.argument("bot_id")
@table_option
@stack_option
@json_option
@pass_context
def bot_minutes(
    ctx: Context, bot_id: str, table: str | None, stack_name: str | None, as_json: bool
) -> None:
    """Show a bot's minutes: summary, decisions, action items with owners, open questions.

    They are built once the meeting ends (bot.done, or the relay session's last
    connection closing), usually within a minute.
    """
    use_stack(ctx, stack_name)
    name, table_resource = ctx.table(table)
    job = BotRecords(table_resource).minutes(bot_id)
    if job is None or "minutes" not in job:
        state = job.get("job_state") if job else None
        raise CliError(
            f"no minutes for bot {bot_id} in table {name} yet"
            + (f" (job {state})" if state else " (its meeting has not ended)")
        )
    shown = render.public(job)
    shown["minutes"] = json.loads(job["minutes"])
    for internal in ("claim_id", "lease_until"):
        shown.pop(internal, None)
    if as_json:
        click.echo(render.to_json(shown))
        return
    click.echo(render.minutes_report(shown))
