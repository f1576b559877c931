"""A bounded background CPU load for the latency benches: busy-looping processes.

``stress-ng --cpu N --timeout S`` where it is installed, else N Python processes each
spinning until its own deadline. Either way every process ends by itself after
``seconds`` even if the bench dies, and :func:`cpu_load` stops them at the end of its
block. Nothing touches the network or the disk.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Final

MAX_WORKERS: Final = 16
MAX_SECONDS: Final = 1800.0
#: One busy loop that ends itself at a deadline (the bench's bound, not only its kill).
SPIN: Final = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    sum(range(1000))\n"
)


def load_command(workers: int, seconds: float) -> list[list[str]]:
    """The processes to start: one stress-ng with ``workers`` CPU stressors, or one Python
    spinner per worker."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1..{MAX_WORKERS}")
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS}]")
    stress = shutil.which("stress-ng")
    if stress is not None:
        return [[stress, "--cpu", str(workers), "--timeout", f"{seconds:.0f}s", "--quiet"]]
    return [[sys.executable, "-c", SPIN, f"{seconds:.1f}"] for _ in range(workers)]


@contextlib.contextmanager
def cpu_load(workers: int, seconds: float) -> Iterator[str]:
    """Busy-loops ``workers`` CPUs for at most ``seconds``; yields what runs the load.
    ``workers == 0`` is no load."""
    if workers == 0:
        yield "none"
        return
    commands = load_command(workers, seconds)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            procs.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        tool = "stress-ng" if len(commands) == 1 and "stress-ng" in commands[0][0] else "python"
        yield f"{workers} x {tool} busy loop"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
