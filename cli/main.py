"""The ``voicebot`` command: the root group, its error handling, and the entry point.

Owns the command line's top only: the root group reads the settings once into the
per-invocation :class:`cli.context.Context`, and every ``CliError`` a command raises becomes
``error: <one line>`` with its exit code; bad arguments are click usage errors (exit 2).
The commands live in :mod:`cli.commands`, a module per group or command. Tokens and
secrets are printed only where a command's purpose is to print them (``token mint``,
``dev``), never in errors.
"""

from __future__ import annotations

from typing import Any

import click

from cli.commands.bot import bot
from cli.commands.dev import dev
from cli.commands.outputs import outputs
from cli.commands.records import bots, transcript
from cli.commands.tokens import token
from cli.commands.webhooks import webhook
from cli.context import Context
from cli.errors import CliError
from cli.settings import Settings, load


class VoicebotGroup(click.Group):
    """The top-level group: turns every ``CliError`` into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report a ``CliError`` as ``error: <message>``."""
        try:
            return super().invoke(ctx)
        except CliError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=VoicebotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def voicebot(ctx: click.Context) -> None:
    """Give a Recall.ai meeting bot a real-time voice: create bots, watch them, run locally."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else load()
    ctx.obj = Context(
        settings=settings, stack_name=settings.stack_name, stack_named=settings.stack_from_env
    )


voicebot.add_command(bot)
voicebot.add_command(bots)
voicebot.add_command(transcript)
voicebot.add_command(outputs)
voicebot.add_command(token)
voicebot.add_command(webhook)
voicebot.add_command(dev)


def main() -> None:
    """Console script entry point (``voicebot``)."""
    voicebot(obj=load(), prog_name="voicebot")
