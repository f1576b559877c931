"""``voicebot bot create``: a bot that joins a meeting with the agent page as its camera and voice.

Its own module for its size: the meeting URL, join time, persona and minutes options are
checked, and everything that can fail locally fails, before Recall creates anything; the
bot is then recorded in the table (or said to exist unrecorded, so it is not lost).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

import click

from cli import render
from cli.bot_records import BotRecords, CreatedBot
from cli.bot_request import (
    BotSpec,
    InvalidInput,
    meeting_platform,
    parse_join_at,
    with_token,
    without_token,
)
from cli.context import Context, json_option, pass_context, stack_option, table_option, use_stack
from cli.persona import automatic_leave, operator_agent, overlay_from_flags
from cli.recall_api import REGION_BASE_URLS, base_url
from cli.via_api import via_api
from relay import tokens
from storage.delivery_url import minutes_url_problem
from storage.minutes import is_valid_memory_key

DEFAULT_TOKEN_TTL: Final = 3 * 3600
DEFAULT_BOT_NAME: Final = "Assistant"


def check_minutes_url(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """Click callback: a bot's minutes endpoint (https, public host, no credentials)."""
    problem = minutes_url_problem(value) if value is not None else None
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def check_memory_key(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a memory key is 1-128 printable characters without whitespace."""
    if value is not None and not is_valid_memory_key(value):
        raise click.BadParameter("1-128 printable characters, no whitespace")
    return value


def check_meeting_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Click callback: an https URL on a platform Output Media supports."""
    try:
        meeting_platform(value)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc)) from None
    return value.strip()


@click.command("create")
@via_api("create")
@click.option(
    "--meeting-url",
    required=True,
    callback=check_meeting_url,
    help="Zoom, Google Meet, Teams or Webex URL.",
)
@click.option("--name", "bot_name", default=DEFAULT_BOT_NAME, show_default=True, help="Bot name.")
@click.option(
    "--region",
    type=click.Choice(list(REGION_BASE_URLS)),
    default=None,
    help="Recall region [env RECALL_REGION; default us-west-2].",
)
@click.option("--join-at", default=None, help="ISO 8601 time to join (default: now).")
@click.option("--persona", default=None, help="Persona label, sent in the bot's metadata.")
@click.option(
    "--token-ttl",
    type=click.IntRange(min=60),
    default=DEFAULT_TOKEN_TTL,
    show_default=True,
    help="Meeting length the relay token covers, seconds (added to any --join-at wait).",
)
@click.option("--page-url", default=None, help="Agent page URL [default: stack's AgentPageUrl].")
@click.option(
    "--memory",
    "memory_key",
    default=None,
    callback=check_memory_key,
    help="Memory key (a team, a recurring meeting): file this meeting's minutes under it "
    "and start with the minutes of earlier meetings under it.",
)
@click.option(
    "--minutes-to-chat",
    is_flag=True,
    help="When the bot is told to leave, post its minutes in the meeting chat first "
    "(if the stack allows it: minutes_to_chat).",
)
@click.option(
    "--minutes-url",
    default=None,
    callback=check_minutes_url,
    help="Deliver this bot's minutes to this https endpoint (signed) instead of the stack's.",
)
@table_option
@click.option("--no-record", is_flag=True, help="Do not record the bot in DynamoDB.")
@click.option(
    "--recall-key-secret-arn",
    default=None,
    help="Read the Recall API key from this Secrets Manager secret "
    "[env RECALL_API_KEY_SECRET_ARN; or the key itself in RECALL_API_KEY].",
)
@stack_option
@json_option
@click.option(
    "--instructions",
    default=None,
    help="This bot's own instructions (a persona), over the operator's agent config.",
)
@click.option(
    "--agent",
    "agent_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML/JSON file with this bot's instructions, voice, greeting and tools "
    "(names from the operator's agent config).",
)
@click.option(
    "--agent-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="The operator's agent config that personas are checked against "
    "[env AGENT_CONFIG; default relay_container/agent.yaml].",
)
@pass_context
def bot_create(
    ctx: Context,
    meeting_url: str,
    bot_name: str,
    region: str | None,
    join_at: str | None,
    persona: str | None,
    token_ttl: int,
    page_url: str | None,
    memory_key: str | None,
    table: str | None,
    no_record: bool,
    recall_key_secret_arn: str | None,
    stack_name: str | None,
    as_json: bool,
    minutes_to_chat: bool = False,
    minutes_url: str | None = None,
    instructions: str | None = None,
    agent_file: str | None = None,
    agent_config: str | None = None,
) -> None:
    """Create a bot that joins a meeting with the agent page as its camera and voice.

    --instructions or --agent give the bot its own persona, checked against the
    operator's agent config (its bot_overridable fields) before anything is created.

    Needs a Recall key (RECALL_API_KEY or --recall-key-secret-arn). The agent page URL,
    the relay token secret and the table come from the deployed stack's outputs, or
    from --page-url, RELAY_TOKEN_SECRET and --table (or --no-record). Prints the bot id
    and the page URL without its token.
    """
    use_stack(ctx, stack_name)
    now = datetime.now(UTC)
    region = region or ctx.settings.recall_region
    when: datetime | None = None
    if join_at is not None:
        try:
            when = parse_join_at(join_at, now)
        except InvalidInput as exc:
            raise click.BadParameter(str(exc), param_hint="'--join-at'") from None

    # Everything that can fail locally fails before Recall creates anything.
    if instructions is not None and agent_file is not None:
        raise click.UsageError("give --instructions or --agent, not both")
    operator = operator_agent(agent_config or ctx.settings.agent_config)
    overlay = overlay_from_flags(operator, instructions=instructions, agent_file=agent_file)
    leave_rules = automatic_leave(operator, overlay)
    if overlay is not None and no_record:
        raise click.UsageError(
            "a persona (--instructions/--agent) is stored in the table: drop --no-record"
        )
    base_url(region, ctx.settings.recall_api_base)  # an unknown RECALL_REGION fails here
    key = ctx.recall_key(recall_key_secret_arn)
    page = page_url or ctx.stack.output("AgentPageUrl")
    if not page.startswith(("https://", "http://")):
        raise click.BadParameter(f"{page!r} is not an http(s) URL", param_hint="'--page-url'")
    secret = ctx.token_secret()
    records: BotRecords | None = None
    if no_record and memory_key is not None:
        raise click.UsageError("--memory needs the bot recorded (drop --no-record)")
    if no_record and (minutes_to_chat or minutes_url is not None):
        raise click.UsageError(
            "--minutes-to-chat and --minutes-url need the bot recorded (drop --no-record)"
        )
    if not no_record:
        _, table_resource = ctx.table(table)
        records = BotRecords(table_resource)
        records.check()

    session_id = str(uuid.uuid4())
    wait = (when - now).total_seconds() if when else 0.0
    token = tokens.mint(secret, session_id, token_ttl + int(wait), now=now.timestamp())
    try:
        spec = BotSpec(
            meeting_url=meeting_url,
            bot_name=bot_name,
            session_id=session_id,
            page_url=with_token(page, token),
            join_at=when,
            persona=persona,
            automatic_leave=leave_rules,
        )
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None

    with ctx.recall_client(key, region) as recall:
        created = recall.create_bot(spec.request())
    bot_id = str(created["id"])
    shown_page = without_token(spec.page_url)
    result: dict[str, Any] = {
        "bot_id": bot_id,
        "session_id": session_id,
        "region": region,
        "page_url": shown_page,
        "join_at": spec.request().get("join_at"),
        "recorded": False,
        "persona": sorted(overlay) if overlay else [],
    }
    if records is not None:
        try:
            created_bot = CreatedBot(
                bot_id=bot_id,
                session_id=session_id,
                region=region,
                meeting_url=meeting_url,
                bot_name=bot_name,
                created_at=now,
            )
            records.record_created(created_bot)
            records.record_binding(created_bot, overlay)
            records.record_session(
                session_id,
                bot_id,
                memory_key,
                minutes_to_chat=minutes_to_chat,
                minutes_url=minutes_url,
            )
            result["recorded"] = True
        finally:
            if not result["recorded"]:
                # Say what exists before the error line, so the bot is not lost.
                click.echo(f"bot {bot_id} was created in {region} but not recorded", err=True)
    if as_json:
        click.echo(render.to_json(result))
        return
    click.echo(
        render.fields(
            [
                ("bot", bot_id),
                ("session", session_id),
                ("region", region),
                ("page", shown_page),
                ("joins", result["join_at"] or "now"),
                ("recorded", "yes" if result["recorded"] else "no (--no-record)"),
                ("persona", ", ".join(result["persona"]) or "the operator's agent config"),
            ]
        )
    )
