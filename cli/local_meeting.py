"""A scripted meeting (``voicebot dev --meeting``) wired into the local stack's children.

The simulator transcribes the script's spoken lines in order (its ``--transcripts`` file),
and the relay runs with the operator's agent file plus the script's turn_taking/chat keys.
Both files are written into the stack's private temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cli.meeting_replay import MeetingScript, agent_overrides, spoken_lines


def needs_own_agent(meeting: MeetingScript) -> bool:
    """Whether the script sets agent keys, so the relay needs an agent file of its own."""
    return bool(agent_overrides(meeting))


def write_transcripts(meeting: MeetingScript, path: Path) -> Path:
    """The scripted meeting's spoken lines at ``path``, for the simulator."""
    path.write_text(spoken_lines(meeting), encoding="utf-8")
    return path


def write_agent(meeting: MeetingScript, base: str | None, path: Path) -> Path:
    """The relay's agent file at ``path``: ``base`` with the script's turn_taking/chat keys."""
    agent: dict[str, object] = {}
    if base is not None:
        loaded = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
        agent = loaded if isinstance(loaded, dict) else {}
    agent.update(agent_overrides(meeting))
    path.write_text(yaml.safe_dump(agent, sort_keys=False), encoding="utf-8")
    return path
