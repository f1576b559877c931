"""``voicebot dev``: run the local stack in the foreground, print its banner, stop it cleanly.

The command around :class:`cli.local_stack.LocalStack`: it records the agent page's session
as a bot (so ``bots``, ``transcript`` and ``bot show`` find it), writes the dev profile that
lets other ``voicebot`` commands find the running stack without flags, replays a scripted
meeting when given one, and watches its children and its stdout until a signal, a dead
child or a closed terminal stops it. It prints the stack's secrets on purpose: the banner
is how a developer learns them.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import boto3
import click

from cli import dev_profile
from cli.bot_records import BotRecords, CreatedBot
from cli.bot_request import with_token
from cli.context import Context, pass_context
from cli.dev_profile import DevProfile
from cli.errors import LocalStackError
from cli.local_children import Interrupted
from cli.local_config import (
    DEFAULT_DYNAMODB_PORT,
    DEFAULT_RELAY_PORT,
    DEFAULT_WEBHOOK_PORT,
    LOCAL_AWS_ENV,
    DevConfig,
    DevEndpoints,
)
from cli.local_stack import LocalStack
from cli.meeting_replay import load_script, start_replay
from cli.stack import AWS_FAILURES, describe_aws_error
from relay import tokens

#: The agent page's token in the banner lasts a working day, seconds.
DEV_TOKEN_TTL: Final = 12 * 3600
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


@click.command("dev")
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
