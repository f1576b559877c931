"""The ``voicebot`` commands: argument parsing, resolution of settings, and output.

Owns the command line only: each command resolves what it needs (flag, then environment,
then the deployed stack's outputs and secrets), calls the module that does the work, and
prints. Every ``CliError`` becomes ``error: <one line>`` with its exit code; bad arguments
are click usage errors (exit 2). Tokens and secrets are printed only where a command's
purpose is to print them (``token mint``, ``dev``), never in errors.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
import click

from cli import dev_profile, render
from cli.bot_records import BotRecords, CreatedBot
from cli.bot_request import (
    BotSpec,
    InvalidInput,
    meeting_platform,
    parse_join_at,
    with_token,
    without_token,
)
from cli.dev_profile import DevProfile
from cli.errors import AwsError, CliError, ConfigError, LocalStackError
from cli.local_stack import (
    DEFAULT_DYNAMODB_PORT,
    DEFAULT_RELAY_PORT,
    DEFAULT_WEBHOOK_PORT,
    LOCAL_AWS_ENV,
    DevConfig,
    DevEndpoints,
    Interrupted,
    LocalStack,
)
from cli.meeting_exit import Exit, leave_meeting
from cli.meeting_replay import load_script, start_replay
from cli.persona import automatic_leave, operator_agent, overlay_from_flags
from cli.recall_api import REGION_BASE_URLS, RecallClient, base_url
from cli.sample_webhook import send, signed_sample
from cli.settings import Settings, load
from cli.stack import AWS_FAILURES, Stack, describe_aws_error
from cli.via_api import via_api
from relay import tokens
from storage.delivery_url import minutes_url_problem
from storage.minutes import is_valid_memory_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

DEFAULT_TOKEN_TTL: Final = 3 * 3600
DEFAULT_BOT_NAME: Final = "Assistant"
DEV_TOKEN_TTL: Final = 12 * 3600


class VoicebotGroup(click.Group):
    """The top-level group: turns every ``CliError`` into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report a ``CliError`` as ``error: <message>``."""
        try:
            return super().invoke(ctx)
        except CliError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@dataclass
class Context:
    """Per-invocation state: settings once, the stack looked up at most once."""

    settings: Settings
    stack_name: str
    #: ``--stack`` or ``VOICEBOT_STACK`` named the stack: the dev profile is not used.
    stack_named: bool = False
    _stacks: dict[str, Stack] = field(default_factory=dict)

    @property
    def stack(self) -> Stack:
        """The deployed stack named ``stack_name`` (no AWS call until an output is needed)."""
        return self._stacks.setdefault(self.stack_name, Stack(self.stack_name))

    def local(self) -> DevProfile | None:
        """The running ``voicebot dev`` stack, unless a stack or table was named."""
        if self.stack_named or self.settings.table_name:
            return None
        return dev_profile.read(self.settings.dev_profile)

    def table(self, flag: str | None) -> tuple[str, Table]:
        """The table by ``--table``, ``TABLE_NAME``, the running dev stack, or the stack's output.

        With no flag and a ``voicebot dev`` stack running, that stack's local table is used
        (said on stderr, so a script's stdout stays clean).
        """
        if not flag:
            local = self.local()
            if local is not None:
                click.echo(
                    f"(the local stack of voicebot dev, pid {local.pid}; "
                    "--stack or --table reads a deployed one)",
                    err=True,
                )
                resource = boto3.resource(
                    "dynamodb",
                    endpoint_url=local.dynamodb_url,
                    region_name=local.region,
                    aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                )
                return local.table_name, resource.Table(local.table_name)
        name = flag or self.settings.table_name
        if not name:
            try:
                name = self.stack.output("TableName")
            except AwsError as exc:
                raise AwsError(f"{exc} (for the table alone: --table or TABLE_NAME)") from None
        try:
            return name, boto3.resource("dynamodb").Table(name)
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot use table {name} ({describe_aws_error(exc)})") from None

    def token_secret(self) -> str:
        """``RELAY_TOKEN_SECRET``, or the stack's relay token secret; checked for length."""
        secret = self.settings.relay_token_secret
        if secret is None:
            arn = self.stack.output("RelayTokenSecretArn")
            secret = self.stack.secret(arn, "relay token")
        try:
            tokens.check_secret(secret)
        except tokens.TokenError as exc:
            raise ConfigError(str(exc)) from None
        return secret

    def recall_key(self, secret_arn: str | None) -> str:
        """``--recall-key-secret-arn``, ``RECALL_API_KEY`` or ``RECALL_API_KEY_SECRET_ARN``."""
        if secret_arn:
            return self.stack.secret(secret_arn, "Recall API key")
        if self.settings.recall_api_key:
            return self.settings.recall_api_key
        if self.settings.recall_key_secret_arn:
            return self.stack.secret(self.settings.recall_key_secret_arn, "Recall API key")
        raise ConfigError("no Recall API key: set RECALL_API_KEY or pass --recall-key-secret-arn")

    def recall_client(self, key: str, region: str) -> RecallClient:
        """A client for ``region`` (``RECALL_API_BASE`` overrides the URL), showing retries."""
        return RecallClient(
            api_key=key,
            region=region,
            base=base_url(region, self.settings.recall_api_base),
            on_retry=show_retry,
        )


def show_retry(status: int | None, delay: float, attempt: int, attempts: int) -> None:
    """Progress for a long wait: what Recall said and when we try again."""
    said = f"Recall answered {status}" if status is not None else "Recall was unreachable"
    click.echo(f"{said}; retrying in {delay:.1f} s (attempt {attempt} of {attempts})…", err=True)


pass_context = click.make_pass_decorator(Context)


def stack_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--stack NAME``: which deployed stack to read outputs from."""
    return click.option(
        "--stack",
        "stack_name",
        default=None,
        help="CloudFormation stack to read outputs from [env VOICEBOT_STACK; "
        "default RecallVoiceAgent].",
    )(command)


def use_stack(ctx: Context, stack_name: str | None) -> None:
    """Point ``ctx`` at ``--stack`` when given (before any output is read)."""
    if stack_name:
        ctx.stack_name = stack_name
        ctx.stack_named = True


def table_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--table NAME``: the DynamoDB table, instead of the stack's ``TableName``."""
    return click.option(
        "--table",
        default=None,
        help="DynamoDB table [env TABLE_NAME; default: the stack's TableName output].",
    )(command)


json_option = click.option("--json", "as_json", is_flag=True, help="Stable JSON for scripts.")


# Top level


@click.group(cls=VoicebotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def voicebot(ctx: click.Context) -> None:
    """Give a Recall.ai meeting bot a real-time voice: create bots, watch them, run locally."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else load()
    ctx.obj = Context(
        settings=settings, stack_name=settings.stack_name, stack_named=settings.stack_from_env
    )


# bot


@voicebot.group()
def bot() -> None:
    """Create, inspect and dismiss meeting bots."""


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


@bot.command("create")
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


@voicebot.command("bots")
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


@voicebot.command("transcript")
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
    click.echo(transcript_text(details.turns))


def transcript_text(turns: Sequence[Mapping[str, Any]]) -> str:
    """One line per turn: UTC time, who spoke, and everything they said (made safe to print:
    transcripts are untrusted text)."""
    lines = []
    for turn in turns:
        when = render.parse_time(turn.get("at"))
        stamp = when.strftime("%H:%M:%S") if when else "--:--:--"
        text = render.safe(" ".join(str(turn.get("text", "")).split()))
        role = render.safe(render.speaker(turn))
        lines.append(f"{stamp}  {role:<9}  {text}")
    return "\n".join(lines)


# stack


@voicebot.command("outputs")
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


# token


@voicebot.group()
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


# webhook


@voicebot.group()
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


# dev


#: Signals that stop ``voicebot dev`` in order: Ctrl-C, `kill`, and a closed terminal.
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: How often the dev command checks its children and its stdout, seconds.
WATCH_INTERVAL: Final = 0.25
#: Who the agent page's conversation is, in the table (``bots`` lists it with this name).
DEV_PAGE_NAME: Final = "agent page (voicebot dev)"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP set ``stop`` instead of raising, for an orderly shutdown."""
    handlers = {}

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in STOP_SIGNALS:
        handlers[signum] = signal.signal(signum, request_stop)
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def stdout_closed() -> bool:
    """Whether our stdout's reader is gone: nobody sees the stack any more, so it stops.

    A pipe whose reader closed (``voicebot dev | tee log``, then Ctrl-C) polls as POLLERR; a
    terminal that hung up, as POLLHUP. A regular file or ``/dev/null`` never does.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # not a real file (tests run the command in-process): nothing to watch
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def dev_banner(endpoints: DevEndpoints, page_token: str, page_session: str) -> str:
    """What ``voicebot dev`` prints once everything answers."""
    model = (
        f"simulated ({endpoints.model_url})" if endpoints.model_url else "OpenAI (OPENAI_API_KEY)"
    )
    page = with_token(endpoints.relay_http_url, page_token)
    lines = [
        "voicebot dev: the local stack is up (Ctrl-C stops it)",
        "",
        f"  agent page:      {page}",
        f"  relay:           {endpoints.relay_ws_url}",
        f"  model:           {model}",
        f"  webhook URL:     {endpoints.webhook_url}",
        f"  webhook secret:  {endpoints.webhook_secret}",
        f"  DynamoDB:        {endpoints.dynamodb_url} (table {endpoints.table_name})",
        "",
        "Open the agent page, allow the microphone, then speak and pause: the model answers",
        "when you stop talking (the simulated one after 0.5 s of quiet, or after 8 s of talk).",
        "",
        "Watch it from another terminal; while this runs, voicebot needs no flags:",
        "  voicebot bots",
        f"  voicebot transcript {page_session}",
        f"  voicebot bot show {page_session}",
        "Send a signed sample webhook:",
        f"  voicebot webhook send-sample {endpoints.webhook_url} "
        f"--secret {endpoints.webhook_secret}",
    ]
    return "\n".join(lines)


def record_page_session(endpoints: DevEndpoints, page_session: str) -> None:
    """Record the agent page's session as a bot, so ``bots`` and ``bot show`` find it."""
    resource = boto3.resource(
        "dynamodb",
        endpoint_url=endpoints.dynamodb_url,
        region_name=LOCAL_AWS_ENV["AWS_REGION"],
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    records = BotRecords(resource.Table(endpoints.table_name))
    bot = CreatedBot(
        bot_id=page_session,
        session_id=page_session,
        region="local",
        meeting_url=endpoints.relay_http_url,
        bot_name=DEV_PAGE_NAME,
        created_at=datetime.now(UTC),
    )
    records.record_created(bot)
    # The relay's tools act for the session's bot: the page is this one (notes go under it).
    records.record_binding(bot)
    # The page's session ending (its last connection closing) builds its minutes.
    records.record_session(page_session, page_session, None)


@voicebot.command("dev")
@click.option(
    "--relay-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_RELAY_PORT,
    show_default=True,
    help="Relay and agent page.",
)
@click.option(
    "--webhook-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_WEBHOOK_PORT,
    show_default=True,
    help="Webhook app.",
)
@click.option(
    "--dynamodb-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_DYNAMODB_PORT,
    show_default=True,
    help="DynamoDB-compatible server.",
)
@click.option(
    "--simulator-tool",
    default=None,
    metavar="NAME",
    help="The simulated model calls this tool (declared in agent.yaml) after every spoken turn.",
)
@click.option(
    "--meeting",
    "meeting_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Replay this scripted meeting (YAML: speakers, words, chat) once the stack is up, "
    "acting as Recall; see README 'Meetings'.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show every child's output, prefixed.")
@pass_context
def dev(
    ctx: Context,
    relay_port: int,
    webhook_port: int,
    dynamodb_port: int,
    simulator_tool: str | None,
    meeting_path: Path | None,
    verbose: bool,
) -> None:
    """Run the whole stack locally: DynamoDB, webhooks, relay, simulated model (or OpenAI).

    The relay's token secret is RELAY_TOKEN_SECRET when set (so `voicebot token mint` and
    `voicebot bot create --page-url` work against it), else a fresh one per run.
    """
    meeting = None
    if meeting_path is not None:
        try:
            meeting = load_script(meeting_path)
        except ValueError as exc:
            raise click.UsageError(f"--meeting {exc}") from None
        if ctx.settings.openai_api_key:
            raise click.UsageError("--meeting replays to the simulated model: unset OPENAI_API_KEY")
    config = DevConfig(
        relay_port=relay_port,
        webhook_port=webhook_port,
        dynamodb_port=dynamodb_port,
        openai_api_key=ctx.settings.openai_api_key,
        relay_token_secret=ctx.token_secret() if ctx.settings.relay_token_secret else None,
        environ=ctx.settings.environ,
        verbose=verbose,
        simulator_tool=simulator_tool,
        meeting=meeting,
    )
    stop = threading.Event()

    def progress(line: str) -> None:
        # A closed terminal or pipe must not turn the orderly stop into a traceback.
        with suppress(OSError):
            click.echo(line, err=True)

    stack = LocalStack(config, stop, progress)
    profile_path = ctx.settings.dev_profile
    with stop_on_signals(stop):
        started = time.monotonic()
        try:
            endpoints = stack.start()
            progress(f"ready in {time.monotonic() - started:.1f} s")
            page_session = f"dev-{uuid.uuid4().hex[:12]}"
            page_token = tokens.mint(endpoints.relay_token_secret, page_session, DEV_TOKEN_TTL)
            record_page_session(endpoints, page_session)
            dev_profile.write(
                profile_path,
                DevProfile(
                    pid=os.getpid(),
                    table_name=endpoints.table_name,
                    dynamodb_url=endpoints.dynamodb_url,
                    region=LOCAL_AWS_ENV["AWS_REGION"],
                    relay_url=endpoints.relay_http_url,
                    webhook_url=endpoints.webhook_url,
                    page_session=page_session,
                ),
            )
            click.echo(dev_banner(endpoints, page_token, page_session))
            sys.stdout.flush()
            if meeting is not None:
                start_replay(
                    meeting,
                    relay_url=endpoints.relay_ws_url.removesuffix("/v1/realtime"),
                    token_secret=endpoints.relay_token_secret,
                    recall_secret=endpoints.webhook_secret,
                    say=progress,
                    record=lambda session_id: record_page_session(endpoints, session_id),
                )
            while not stop.wait(WATCH_INTERVAL):
                dead = stack.first_dead()
                if dead is not None:
                    raise LocalStackError(dead.death_report())
                if stdout_closed():
                    progress("stdout closed: stopping")
                    break
        except Interrupted:
            pass
        except OSError as exc:
            # Our stdout went away mid-banner (a pipe closed): stop quietly, as on Ctrl-C.
            if not isinstance(exc, BrokenPipeError):
                raise LocalStackError(f"cannot run the local stack ({exc})") from None
        except AWS_FAILURES as exc:
            raise LocalStackError(
                f"cannot record the agent page's session ({describe_aws_error(exc)})"
            ) from None
        finally:
            progress("stopping…")
            dev_profile.remove(profile_path, os.getpid())
            stack.stop()
            progress("stopped")


def main() -> None:
    """Console script entry point (``voicebot``)."""
    voicebot(obj=load(), prog_name="voicebot")
