"""A bot's persona as ``voicebot bot create`` takes it: ``--instructions`` or ``--agent FILE``.

Owns turning those flags into the overlay the CLI stores (``relay.overlay.BotOverlay``),
validated against the operator's agent config (``--agent-config``, ``AGENT_CONFIG``, or
the ``relay_container/agent.yaml`` the relay image carries) with the relay's own schema
and wording, so a bad or locked field fails before Recall creates anything; and the
``automatic_leave`` of the create-bot request, from the same config (:func:`automatic_leave`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

import relay
from cli.errors import ConfigError
from relay.agent import AgentConfig, load_agent_config
from relay.errors import ConfigError as RelayConfigError
from relay.overlay import merge, validate_overlay

#: The agent config the relay image carries (``COPY relay_container/agent.yaml``).
IMAGE_AGENT_CONFIG: Final = Path(relay.__file__).resolve().parent.parent / "agent.yaml"
#: Largest ``--agent`` file read (instructions are at most 100,000 characters).
MAX_OVERLAY_FILE_BYTES: Final = 256 * 1024


class PersonaError(ConfigError):
    """The persona does not fit the operator's agent config (every problem listed)."""


def operator_agent(path: str | None) -> AgentConfig:
    """The operator's agent config: ``path``, else the image's file, else the defaults."""
    chosen = Path(path) if path else (IMAGE_AGENT_CONFIG if IMAGE_AGENT_CONFIG.is_file() else None)
    try:
        return load_agent_config(chosen)
    except RelayConfigError as exc:
        raise ConfigError("; ".join(exc.problems)) from None


def overlay_from_flags(
    agent: AgentConfig, *, instructions: str | None, agent_file: str | None
) -> dict[str, Any] | None:
    """The overlay to store for these flags, validated; ``None`` when neither is given.

    Raises:
        PersonaError: unreadable file, unknown or locked field, unknown tool, bad value.
    """
    if agent_file is not None:
        return checked_overlay(agent, read_overlay_file(agent_file), source=f"--agent {agent_file}")
    if instructions is not None:
        return checked_overlay(agent, {"instructions": instructions}, source="--instructions")
    return None


def checked_overlay(agent: AgentConfig, data: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """``data`` as the overlay to store, checked against the operator's ``agent``.

    The one check both ``bot create`` and the control API's create use
    (``relay.overlay.validate_overlay``: the relay's own schema and wording).

    Raises:
        PersonaError: unknown or locked field, unknown tool, bad value (every problem).
    """
    try:
        return validate_overlay(agent, data, source=source).stored()
    except RelayConfigError as exc:
        raise PersonaError("; ".join(exc.problems)) from None


def read_overlay_file(agent_file: str) -> dict[str, Any]:
    """The mapping in an ``--agent`` file (YAML, or JSON by its suffix), size-bounded."""
    return _read(Path(agent_file))


def automatic_leave(agent: AgentConfig, overlay: dict[str, Any] | None) -> dict[str, Any]:
    """Recall's ``automatic_leave`` for a bot: the operator's ``automatic_leave``, with
    ``in_call_recording_timeout`` from the bot's minutes limit (its overlay's, if lower)
    plus ``bill.hard_cap_margin_minutes``.

    Raises:
        PersonaError: the overlay no longer fits the agent config.
    """
    try:
        bill = merge(agent, overlay).bill
    except RelayConfigError as exc:
        raise PersonaError("; ".join(exc.problems)) from None
    return agent.automatic_leave.request(bill.max_minutes, bill.hard_cap_margin_minutes)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_OVERLAY_FILE_BYTES + 1)
    except OSError as exc:
        raise PersonaError(f"--agent {path}: {exc.strerror}") from None
    if len(raw) > MAX_OVERLAY_FILE_BYTES:
        raise PersonaError(f"--agent {path}: larger than {MAX_OVERLAY_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise PersonaError(f"--agent {path} is not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PersonaError(f"--agent {path} must hold a mapping at the top level")
    return data
