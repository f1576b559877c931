"""BotOverlay: a bot's own persona over the operator's agent config, within what it allows.

A bot may set ``instructions``, ``voice``, ``greeting``, ``tools`` (names chosen from
the tools the operator configured), ``turn_taking`` and ``bill`` (limits at most the
operator's: ``relay.bill.narrowed``), and only the fields the operator's
``bot_overridable`` lists; everything else stays the operator's. :func:`validate_overlay`
runs when ``voicebot bot create`` records the overlay, with the agent config's own schema
and error wording (``<source> <field>: <problem>``), so a bad persona fails before a bot
exists; :func:`merge` runs again when the relay starts the bot's session (the operator may
have narrowed ``bot_overridable`` since: what is no longer allowed is refused, never
applied silently). Pure: no I/O (``relay.bot_binding`` loads the stored overlay).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.agent import AgentConfig, TurnTaking
from relay.bill import BillLimits, narrowed
from relay.errors import ConfigError
from relay.tools.spec import tool_name

#: Every field an overlay can carry; the operator's ``bot_overridable`` picks among them.
OVERLAY_FIELDS: Final = ("instructions", "voice", "greeting", "tools", "bill", "turn_taking")


class BotOverlay(BaseModel):
    """The fields a bot overrides; ``None`` means "the operator's"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instructions: str | None = None
    voice: str | None = None
    greeting: str | None = None
    #: Names of tools from the operator's ``tools``; the bot gets only these.
    tools: tuple[str, ...] | None = Field(default=None, max_length=64)
    #: The bot's own limits, each at most the operator's.
    bill: BillLimits | None = None
    turn_taking: TurnTaking | None = None

    def stored(self) -> dict[str, Any]:
        """The overlay as stored (only the fields it sets)."""
        return self.model_dump(mode="json", exclude_none=True)  # tuples become lists


def validate_overlay(
    agent: AgentConfig, data: Mapping[str, Any], *, source: str = "overlay"
) -> BotOverlay:
    """Check a bot's overlay against the operator's ``agent``; return it parsed.

    Args:
        agent: the operator's agent config (its ``bot_overridable`` and ``tools``).
        data: the overlay as written (``--agent`` file, or ``--instructions``).
        source: how messages name the input (``--agent bot.yaml``).

    Raises:
        ConfigError: every problem at once: unknown field, a field the operator locked,
            a tool the operator did not configure, a value the agent schema refuses.
    """
    problems: list[str] = []
    try:
        overlay = BotOverlay.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_problems(exc, source)) from None
    locked = [
        name
        for name in OVERLAY_FIELDS
        if getattr(overlay, name) is not None and name not in agent.bot_overridable
    ]
    for name in locked:
        allowed = ", ".join(agent.bot_overridable) or "nothing"
        problems.append(
            f"{source} {name}: locked by the operator's agent config "
            f"(bot_overridable allows: {allowed})"
        )
    if overlay.tools is not None and "tools" not in locked:
        available = [n for n in (tool_name(t) for t in agent.tools) if n is not None]
        for name in overlay.tools:
            if name not in available:
                listed = ", ".join(available) or "none"
                problems.append(
                    f"{source} tools: {name!r} is not one of the operator's tools ({listed})"
                )
    if overlay.bill is not None and "bill" not in locked:
        problems += [f"{source} {problem}" for problem in narrowed(agent.bill, overlay.bill)]
    if problems:
        raise ConfigError(problems)
    _merged(agent, overlay, source)  # value checks by the agent schema itself
    return overlay


def merge(agent: AgentConfig, overlay: BotOverlay | Mapping[str, Any] | None) -> AgentConfig:
    """The agent config a bot's session runs with: ``agent`` with ``overlay`` applied.

    Validates again (see the module docstring); ``None`` returns ``agent``.

    Raises:
        ConfigError: the overlay is no longer allowed or valid under ``agent``.
    """
    if overlay is None:
        return agent
    parsed = overlay if isinstance(overlay, BotOverlay) else validate_overlay(agent, overlay)
    if isinstance(overlay, BotOverlay):
        validate_overlay(agent, parsed.stored())
    return _merged(agent, parsed, "overlay")


def _merged(agent: AgentConfig, overlay: BotOverlay, source: str) -> AgentConfig:
    data = agent.model_dump(exclude_unset=True)
    for name in ("instructions", "voice", "greeting"):
        value = getattr(overlay, name)
        if value is not None:
            data[name] = value
    if overlay.bill is not None:
        limits = overlay.bill.model_dump(exclude_none=True)
        data["bill"] = {**agent.bill.model_dump(exclude_unset=True), **limits}
    if overlay.turn_taking is not None:
        data["turn_taking"] = overlay.turn_taking.model_dump()
    if overlay.tools is not None:
        chosen = set(overlay.tools)
        data["tools"] = [t for t in agent.tools if tool_name(t) in chosen or tool_name(t) is None]
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, source)) from None


def _problems(exc: ValidationError, source: str) -> list[str]:
    # The wording of relay.agent.load_agent_config: "<source> <dotted.field>: <message>".
    return [
        f"{source} {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in exc.errors()
    ]
