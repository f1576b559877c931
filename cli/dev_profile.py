"""The dev profile: where a running ``voicebot dev`` stack answers, for the other commands.

Owns one small JSON file (``~/.local/state/voicebot/dev.json``, or ``VOICEBOT_DEV_PROFILE``)
that ``voicebot dev`` writes once its stack is up and removes when it stops. While the
process that wrote it is alive, ``voicebot bots``, ``bot show`` and ``transcript`` read the
local table through it with no flags. It holds no secret (table name, endpoint, region,
URLs and a pid) and is written owner-only all the same. A file that is missing, too big,
malformed or left by a process that is gone counts as no profile: it can never point a
command at something that is not running.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

#: A profile is a few hundred bytes; anything larger is not ours.
MAX_PROFILE_BYTES: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class DevProfile:
    """Where the local stack answers (no secret), and which process owns it."""

    pid: int
    table_name: str
    dynamodb_url: str
    region: str
    relay_url: str
    webhook_url: str
    #: The agent page's session id in this run (``bot show`` / ``transcript`` take it).
    page_session: str


def default_path(home: Path, state_home: str | None) -> Path:
    """``$XDG_STATE_HOME/voicebot/dev.json``, else ``~/.local/state/voicebot/dev.json``."""
    base = Path(state_home) if state_home else home / ".local" / "state"
    return base / "voicebot" / "dev.json"


def write(path: Path, profile: DevProfile) -> None:
    """Write ``profile`` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(profile), out, indent=2)
    partial.replace(path)


def remove(path: Path, pid: int) -> None:
    """Remove the profile if process ``pid`` wrote it (a newer run's profile stays)."""
    profile = read(path, require_alive=False)
    if profile is not None and profile.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read(path: Path, *, require_alive: bool = True) -> DevProfile | None:
    """The profile at ``path``, or ``None`` if absent, unreadable, malformed or stale."""
    try:
        with path.open("rb") as source:
            raw = source.read(MAX_PROFILE_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_PROFILE_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        profile = DevProfile(**{name: data[name] for name in DevProfile.__dataclass_fields__})
    except (KeyError, TypeError):
        return None
    if not isinstance(profile.pid, int) or isinstance(profile.pid, bool) or profile.pid <= 0:
        return None
    strings = (
        profile.table_name,
        profile.dynamodb_url,
        profile.region,
        profile.relay_url,
        profile.webhook_url,
        profile.page_session,
    )
    if not all(isinstance(value, str) and value for value in strings):
        return None
    if not profile.dynamodb_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        return None  # the profile only ever names the local server; anything else is not ours
    if require_alive and not process_alive(profile.pid):
        return None
    return profile


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the pid was reused, our writer is gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
