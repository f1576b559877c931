"""``--via-api``: a command done through the control API instead of AWS and Recall directly.

:func:`via_api` decorates a command with the ``--via-api`` flag. With the flag, the
command's own body does not run: :func:`run` makes the same request of the control API
(``cli.control_client``, SigV4 with the caller's AWS credentials) and prints the answer
the way the direct command prints its own, so ``--json`` output is the same either way
(``tests/control_api/test_via_api.py`` compares them). Without it, nothing changes.

The API's URL: ``VOICEBOT_API_URL``, else the stack's ``ControlApiUrl`` output. Options
that only make sense on the direct path (``--table``, ``--page-url``, ``--no-record``,
``--recall-key-secret-arn``) are refused with ``--via-api``: the API has its own.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

import click

from cli import render
from cli.context import Context, use_stack
from cli.control_client import ControlClient
from cli.errors import ConfigError
from cli.persona import read_overlay_file

#: The options a direct command has that the API decides for itself (a persona is
#: checked against the agent.yaml the stack deployed, not a local --agent-config).
DIRECT_ONLY: Final = (
    "table",
    "page_url",
    "no_record",
    "recall_key_secret_arn",
    "agent_config",
)
_EXECUTE_API_HOST: Final = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


def via_api(operation: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--via-api`` to a command; with it, run ``operation`` through the control API."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, via_api: bool = False, **kwargs: Any) -> Any:
            if not via_api:
                return command(*args, **kwargs)
            return run(operation, kwargs)

        return click.option(
            "--via-api",
            "via_api",
            is_flag=True,
            help="Do it through the stack's control API (SigV4 with your AWS credentials).",
        )(wrapper)

    return decorate


def client_for(url: str, transport: Any = None) -> ControlClient:
    """A signed client for ``url`` with the default AWS credentials."""
    import boto3

    session = boto3.Session()
    match = _EXECUTE_API_HOST.search(url.split("/")[2] if "//" in url else url)
    region = match.group(1) if match else session.region_name or "us-east-1"
    return ControlClient(
        url, region=region, credentials=session.get_credentials(), transport=transport
    )


def run(operation: str, options: dict[str, Any]) -> None:
    """Do ``operation`` with the command's ``options`` through the control API; print."""
    ctx = click.get_current_context().find_object(Context)
    assert ctx is not None
    used = [name for name in DIRECT_ONLY if options.get(name)]
    if used:
        flags = ", ".join("--" + name.replace("_", "-") for name in used)
        raise click.UsageError(f"{flags}: not with --via-api (the control API has its own)")
    use_stack(ctx, options.get("stack_name"))
    url = ctx.settings.api_url or ctx.stack.output("ControlApiUrl")
    as_json = bool(options.get("as_json"))
    with client_for(url) as api:
        if operation == "create":
            _create(api, options, as_json)
        elif operation == "leave":
            left = api.leave(options["bot_id"])
            if left.get("status") == "leaving_after_minutes":
                click.echo(
                    f"bot {left['bot_id']} posts its minutes in the chat, then leaves "
                    f"({left['region']})"
                )
            else:
                click.echo(f"bot {left['bot_id']} is leaving its call ({left['region']})")
        elif operation == "show":
            shown = api.show(options["bot_id"])
            shown.setdefault("notes", api.notes(options["bot_id"]))  # as the direct path shows
            if as_json:
                click.echo(render.to_json(shown))
            else:
                now = render.now_utc()
                click.echo(
                    render.bot_report(
                        shown["bot"], shown["events"], shown["connections"], shown["turns"], now
                    )
                    + render.notes_section(shown["notes"], now)
                )
        elif operation == "bots":
            found = api.bots(options["limit"], options["days"])
            if as_json:
                click.echo(render.to_json(found))
            elif not found:
                click.echo(f"no bots in the last {options['days']} days")
            else:
                click.echo(render.bots_table(found, render.now_utc()))
        elif operation == "transcript":
            turns = api.transcript(options["bot_id"])
            if as_json:
                click.echo(render.to_json(turns))
            elif not turns:
                click.echo(f"no turns recorded for {options['bot_id']} yet")
            else:
                click.echo(render.transcript_text(turns))
        elif operation == "minutes":
            shown = api.minutes(options["bot_id"])
            click.echo(render.to_json(shown) if as_json else render.minutes_report(shown))
        else:
            raise ConfigError(f"--via-api does not cover {operation}")


def _create(api: ControlClient, options: dict[str, Any], as_json: bool) -> None:
    body: dict[str, Any] = {
        "meeting_url": options["meeting_url"],
        "bot_name": options["bot_name"],
        "token_ttl": options["token_ttl"],
    }
    for name in ("region", "join_at", "persona", "memory_key", "instructions", "minutes_url"):
        if options.get(name) is not None:
            body[name] = options[name]
    if options.get("minutes_to_chat"):
        body["minutes_to_chat"] = True
    if options.get("instructions") is not None and options.get("agent_file") is not None:
        raise click.UsageError("give --instructions or --agent, not both")
    if options.get("agent_file") is not None:
        body["agent"] = read_overlay_file(options["agent_file"])  # the API checks it
    # One key per invocation: a retry inside this run never creates a second bot.
    result = api.create(body, idempotency_key=f"voicebot-{uuid.uuid4()}")
    result.setdefault("persona", [])
    if as_json:
        click.echo(render.to_json(result))
        return
    click.echo(
        render.fields(
            [
                ("bot", result["bot_id"]),
                ("session", result["session_id"]),
                ("region", result["region"]),
                ("page", result["page_url"]),
                ("joins", result["join_at"] or "now"),
                ("recorded", "yes (control API)"),
            ]
        )
    )
