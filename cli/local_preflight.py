"""Before ``voicebot dev`` starts anything: the modules it needs and the ports it listens on.

A port that is taken is reported with the process holding it (from ``/proc``), since that
is usually a stack left running by an earlier run.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cli.errors import LocalStackError
from cli.local_config import HOST


def missing_dependencies(with_simulator: bool) -> list[str]:
    """Modules the local stack needs that cannot be found."""
    needed = [
        "moto.server",
        "flask",  # moto's server mode
        "uvicorn",
        "fastapi",
        "mangum",
        "aws_lambda_powertools",
        "functions.webhooks.app",
        "websockets",
        "jwt",
        "relay.__main__",
    ]
    if with_simulator:
        needed.append("relay.simulator")
    missing = []
    for module in needed:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def check_ports(ports: Mapping[str, int]) -> None:
    """Refuse duplicate ports and ports something already listens on, naming the flag."""
    seen: dict[int, str] = {}
    for flag, port in ports.items():
        if port in seen:
            raise LocalStackError(f"{flag} and {seen[port]} are both {port}; pick distinct ports")
        seen[port] = flag
        with socket.socket() as sock:
            # Servers set SO_REUSEADDR, so a port in TIME_WAIT is usable: test the same way.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                owner = port_owner(port)
                held = f" by pid {owner[0]} ({owner[1]})" if owner else ""
                stop = f"stop it (kill {owner[0]}) or " if owner else ""
                raise LocalStackError(
                    f"port {port} on {HOST} is already in use{held}; {stop}pick another with {flag}"
                ) from None


#: Longest command line shown for a process holding a port.
MAX_COMMAND_CHARS: Final = 80


def port_owner(port: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """The pid and command line of a process of ours listening on TCP ``port`` (Linux).

    ``None`` where ``/proc`` cannot tell (another user's process, another OS).
    """
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            rows = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if len(fields) > 9 and fields[3] == "0A":
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(_link(fd) in wanted for fd in (entry / "fd").iterdir()):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                command = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv)
                command = command.strip()
                if len(command) > MAX_COMMAND_CHARS:
                    command = command[: MAX_COMMAND_CHARS - 1] + "…"
                return int(entry.name), command or "?"
        except OSError:
            continue
    return None


def _link(path: Path) -> str | None:
    """Where a ``/proc/PID/fd`` entry points; ``None`` if it closed meanwhile."""
    try:
        return os.readlink(path)
    except OSError:
        return None
