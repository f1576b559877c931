"""One child process of ``voicebot dev``: its own process group, a bounded tail, a clean stop.

Each child runs in its own process group, so a terminal's Ctrl-C reaches only
``voicebot dev``, which stops its children in order. On Linux each child also gets SIGTERM
from the kernel if ``voicebot dev`` itself dies without stopping it (``PR_SET_PDEATHSIG``),
so even a ``kill -9`` leaves no orphan holding a port. Its merged output is drained by a
thread into the last :data:`TAIL_LINES` lines, which explain an early death; waiting for
it is bounded by a deadline and by the stop event (:class:`Interrupted`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Final

from cli.errors import LocalStackError

#: Lines of each child's output kept to explain an early death.
TAIL_LINES: Final = 30


class Interrupted(Exception):  # a control-flow signal, not an error shown to users
    """Stopping was requested while the stack was starting."""


#: prctl(2) option: the signal a child gets when the thread that forked it exits.
PR_SET_PDEATHSIG: Final = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when we die (else ``None``).

    The libc handle is looked up here, before any fork, so the function the child runs
    between fork and exec is one foreign call that takes no Python-level lock.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_death_signal


class Child:
    """One child process in its own process group, its output drained into a bounded tail."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        echo: Callable[[str], None] | None = None,
    ) -> None:
        """Start ``argv`` now; stdout and stderr are merged and drained by a thread."""
        self.name = name
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lines = threading.Condition()
        self._echo = echo
        self.popen = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a terminal Ctrl-C reaches only us
            # Created on the main thread, which lives as long as `voicebot dev` does.
            preexec_fn=_parent_death_signal(),
        )
        self.pid = self.popen.pid
        assert self.popen.stdout is not None
        self._reader = threading.Thread(
            target=self._drain, args=(self.popen.stdout,), name=f"drain-{name}", daemon=True
        )
        self._reader.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            with self._lines:
                self.tail.append(line)
                self._lines.notify_all()
            if self._echo is not None:
                self._echo(f"[{self.name}] {line}")
        stream.close()

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def death_report(self) -> str:
        """``name exited with code N`` and the last lines it printed."""
        self._reader.join(timeout=1.0)
        lines = list(self.tail)[-12:]
        shown = "\n".join(f"    {line}" for line in lines) if lines else "    (no output)"
        return f"{self.name} exited with code {self.popen.returncode}; its last lines:\n{shown}"

    def wait_for_line(
        self, pattern: re.Pattern[str], deadline: float, stop: threading.Event
    ) -> str:
        """The first group of the first output line matching ``pattern``."""
        while True:
            with self._lines:
                for line in self.tail:  # at most TAIL_LINES; the ready line comes early
                    match = pattern.search(line)
                    if match:
                        return match.group(1)
                self._lines.wait(timeout=0.1)
            check_progress(self, deadline, stop, "print that it is ready")

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's whole process group, if any of it is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def stop(self, timeout: float) -> None:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL what remains."""
        self.signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        # Also reaps stragglers the leader may have left in its group.
        self.signal_group(signal.SIGKILL)
        self.popen.wait()
        self._reader.join(timeout=1.0)


def check_progress(child: Child, deadline: float, stop: threading.Event, doing: str) -> None:
    """Raise if stopping was requested, the child died, or the deadline passed."""
    if stop.is_set():
        raise Interrupted
    if not child.alive:
        raise LocalStackError(child.death_report())
    if time.monotonic() > deadline:
        raise LocalStackError(f"{child.name} did not {doing} in time")
