"""Relay load benchmark: how many live Realtime sessions one core of relay carries.

Owns: the ramp. For each target (``relay`` = ``python -m relay`` from the sources,
``native`` = the same with its per-message modules compiled by mypyc, as the image ships it
(``make native`` builds build/native first), ``splice`` = bench/splice_relay.py, the floor
of any Python relay, ``naive`` = bench/naive_relay.py, ``direct`` = no relay at all) it
starts a fast GA-speaking echo upstream and the target, then runs one load generator per
step of session counts. The harness (echo upstream + load generator) is bench/wsload.c,
compiled once per run into the run's temporary directory with ``cc`` or ``gcc``; on one core
it offers about three times the sessions the Node harness it replaced did (bench/README.md,
"C harness"). Each session authenticates with its own relay token (its own subject, so the
per-subject limit is on and never hit), streams 20 ms PCM16 24 kHz appends at 50/s, and
times each append's round trip through the echoed ``response.output_audio.delta``. The relay
runs pinned to core 0; the echo upstream, the load generator and this script to core 1, so
the harness is never what the relay competes with; their CPU is reported so a harness
bottleneck is visible.

Per step it reports p50/p99 round trip, loss (sent vs received, plus refused sessions,
unexpected closes and sends skipped because a socket backed up), relay CPU seconds and
share of its core, relay RSS and RSS per session above the idle baseline, and the CPU of
the load generator and echo upstream. Capacity is the largest step with p99 ≤ 25 ms and no
loss. Loopback only; every step is bounded in time, the whole run by ``--max-seconds``,
and every child process is stopped in ``finally`` (also on Ctrl-C, and by the kernel via
PR_SET_PDEATHSIG if this process dies).

Run: ``python -m bench.relay_load [--target relay native splice naive direct] [--steps 50,100,...]
[--step-seconds 10] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import platform
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from relay import tokens

ROOT: Final = Path(__file__).resolve().parents[1]
BENCH: Final = ROOT / "bench"
TARGETS: Final = ("relay", "native", "splice", "naive", "direct")
#: Where ``make native`` (relay_container/build_native.py) leaves the compiled relay.
NATIVE_BUILD: Final = ROOT / "build" / "native"
#: The module each relay target runs.
TARGET_MODULES: Final = {
    "relay": "relay",
    "native": "relay",
    "splice": "bench.splice_relay",
    "naive": "bench.naive_relay",
}
WSLOAD_SOURCE: Final = BENCH / "wsload.c"
COMPILE_TIMEOUT: Final = 120.0
DEFAULT_STEPS: Final = (50, 100, 200, 300, 400, 500, 600, 800)
P99_BUDGET_MS: Final = 25.0
RELAY_CORE: Final = 0
HARNESS_CORE: Final = 1
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_KB: Final = os.sysconf("SC_PAGE_SIZE") // 1024
TOKEN_TTL_SECONDS: Final = 3600
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
SETTLE_TIMEOUT: Final = 15.0
#: A step this broken makes larger steps pointless (they only take time).
GIVE_UP_LOSS_FRACTION: Final = 0.10
GIVE_UP_P99_MS: Final = 1000.0
PR_SET_PDEATHSIG: Final = 1


class BenchError(Exception):
    """The harness could not run a step (a child failed to start or answer in time)."""


# The C harness


def c_compiler() -> str | None:
    """The C compiler the C harness is built with (``cc``, else ``gcc``), if any."""
    return shutil.which("cc") or shutil.which("gcc")


def compile_wsload(workdir: Path, source: Path = WSLOAD_SOURCE) -> Path:
    """Build bench/wsload.c (or ``source``) into ``workdir`` (strict warnings); the binary.

    Raises:
        BenchError: no compiler, or the compile failed or hung (its output is in the message).
    """
    compiler = c_compiler()
    if compiler is None:
        raise BenchError("the load harness (bench/wsload.c) needs a C compiler (cc or gcc) on PATH")
    binary = workdir / "wsload"
    argv = [compiler, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"]
    argv += ["-o", str(binary), str(source)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"could not compile {source.name}: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout)[-3000:]
        raise BenchError(f"compiling {source.name} failed ({' '.join(argv)}):\n{output}")
    return binary


def wsload_request(request: dict[str, Any]) -> bytes:
    """A load request in wsload's stdin format: ``key value`` lines, one ``token`` per session."""
    lines = [f"{key} {value}" for key, value in request.items() if key != "tokens"]
    lines += [f"token {token}" for token in request["tokens"] or ()]
    return ("\n".join(lines) + "\n").encode()


# Process plumbing


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM if the harness dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _pin(core: int | None) -> list[str]:
    return [] if core is None else ["taskset", "-c", str(core)]


class Children:
    """Every child process the harness starts; ``stop_all`` ends them, newest first."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdout: int | IO[bytes] = subprocess.PIPE,
        stderr: int | IO[bytes] = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
            preexec_fn=_die_with_parent,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return proc.returncode

    def stop_all(self) -> None:
        while self.procs:
            self.stop(self.procs.pop())


class LineReader:
    """Lines from a child's stdout, each read bounded by a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.proc = proc
        self.buffer = b""

    def readline(self, deadline: float) -> str:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("timed out waiting for a line from a child process")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise BenchError(f"child exited ({self.proc.poll()}) before writing a line")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Scheduler times of one process, all threads, in seconds."""

    run: float
    wait: float


def cpu_sample(pid: int) -> CpuSample:
    """Time on a CPU and time runnable but waiting, summed over the process's threads.

    From /proc/<pid>/task/*/schedstat (nanoseconds, exact). /proc/<pid>/stat's utime and
    stime are sampled at the 250 Hz tick here and over-charge processes that wake on
    timers, such as a load generator; the run-queue wait shows when other work on the
    same core (other users of this machine) squeezed the process.
    """
    run = wait = 0
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "schedstat").read_text().split()
            run += int(fields[0])
            wait += int(fields[1])
    return CpuSample(run=run / 1e9, wait=wait / 1e9)


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/<pid>/statm."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


def socket_count(pid: int) -> int:
    """Open sockets of a process (listening ones included)."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry).startswith("socket:"):
                count += 1
    return count


def machine_busy(interval: float = 1.0) -> float:
    """Share of all CPUs busy over ``interval`` seconds, from /proc/stat (0..1)."""

    def totals() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy_a, total_a = totals()
    time.sleep(interval)
    busy_b, total_b = totals()
    return (busy_b - busy_a) / max(1, total_b - total_a)


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll GET /healthz until it answers 200, the process dies, or the deadline passes."""
    while True:
        if proc.poll() is not None:
            raise BenchError(f"target exited with {proc.returncode} before it was healthy")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        if time.monotonic() > deadline:
            raise BenchError(f"target not healthy on port {port} in time")
        time.sleep(0.1)


# Results


@dataclass(slots=True)
class StepResult:
    """One step of the ramp, as measured."""

    sessions: int
    connected: int = 0
    connect_failures: int = 0
    first_connect_failure: str | None = None
    connect_seconds: float = 0.0
    window_seconds: float = 0.0
    sent: int = 0
    received: int = 0
    expected: int = 0
    stalled: int = 0
    late_skips: int = 0
    reorders: int = 0
    unmatched: int = 0
    error_events: int = 0
    first_error: Any = None
    closed_while_streaming: int = 0
    samples: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    relay_cpu_seconds: float | None = None
    relay_cpu_share: float | None = None
    relay_runqueue_share: float | None = None
    relay_rss_kb: int | None = None
    rss_kb_per_session: float | None = None
    loadgen_cpu_seconds: float = 0.0
    echo_cpu_seconds: float = 0.0
    harness_core_share: float = 0.0
    harness_runqueue_share: float = 0.0
    loadgen_loop_max_lag_ms: float = 0.0
    machine_busy_before: float | None = None
    error: str | None = None

    @property
    def lost(self) -> int:
        """Appends that never came back, plus those a backed-up socket could not take."""
        return max(0, self.sent - self.received) + self.stalled

    @property
    def lossless(self) -> bool:
        return (
            self.error is None
            and self.connected == self.sessions
            and self.lost == 0
            and self.closed_while_streaming == 0
            and self.received > 0
        )

    @property
    def within_budget(self) -> bool:
        return self.lossless and self.p99_ms is not None and self.p99_ms <= P99_BUDGET_MS

    @property
    def relay_us_per_round_trip(self) -> float | None:
        """Relay CPU per append relayed both ways (the unit a capacity is made of)."""
        if self.relay_cpu_seconds is None or self.sent == 0:
            return None
        return 1e6 * self.relay_cpu_seconds / self.sent

    @property
    def harness_bound(self) -> bool:
        """The load generator missed over 1 % of its sends or its core was over 90 % busy.

        Either way the relay was offered less than the nominal load, so the step understates
        what it would see, and a larger step says more about the harness than the relay.
        """
        nominal = self.connected * 50 * self.window_seconds
        return self.late_skips > 0.01 * nominal or self.harness_core_share > 0.9

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            lost=self.lost,
            lossless=self.lossless,
            relay_us_per_round_trip=self.relay_us_per_round_trip,
            within_budget=self.within_budget,
            harness_bound=self.harness_bound,
        )
        return data


@dataclass(slots=True)
class TargetResult:
    """The ramp for one target."""

    target: str
    baseline_rss_kb: int | None = None
    steps: list[StepResult] = field(default_factory=list)
    note: str | None = None

    @property
    def projected_capacity(self) -> int | None:
        """Sessions that would fill the relay's core, from its CPU per session at the
        largest step within budget (else the largest lossless one): an extrapolation, for
        when the harness or the machine runs out before the relay does. Steps past the
        budget are avoided because a backed-up relay batches more per wake-up and looks
        cheaper per message than it is at the edge."""
        steps = [s for s in self.steps if s.within_budget and s.relay_cpu_share]
        steps = steps or [s for s in self.steps if s.lossless and s.relay_cpu_share]
        if not steps:
            return None
        best = max(steps, key=lambda s: s.sessions)
        assert best.relay_cpu_share is not None
        return int(best.connected / best.relay_cpu_share)

    @property
    def capacity(self) -> int:
        """Largest session count with p99 ≤ 25 ms and no loss (0 if none)."""
        return max((s.sessions for s in self.steps if s.within_budget), default=0)

    @property
    def capacity_is_lower_bound(self) -> bool:
        """The step that ended the capacity failed because the harness, not the target,
        ran out (or the ramp stopped while still within budget)."""
        beyond = [s for s in self.steps if s.sessions > self.capacity]
        if not beyond:
            return True
        return min(beyond, key=lambda s: s.sessions).harness_bound

    def capacity_text(self) -> str:
        """The capacity with how far it can be trusted."""
        text = f"{self.capacity} sessions"
        if self.capacity and self.capacity_is_lower_bound:
            text += " (a lower bound: the ramp ended or the next step was harness-bound)"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "capacity_is_lower_bound": self.capacity_is_lower_bound,
            "baseline_rss_kb": self.baseline_rss_kb,
            "capacity": self.capacity,
            "projected_capacity": self.projected_capacity,
            "note": self.note,
            "steps": [s.as_json() for s in self.steps],
        }


# Settings


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """What the command line asked for."""

    targets: tuple[str, ...]
    steps: tuple[int, ...]
    step_seconds: float
    warmup_seconds: float
    grace_seconds: float
    max_seconds: float
    connect_concurrency: int
    slot_ms: int
    keep_going: bool
    json_path: str | None
    markdown_path: str | None
    pin: bool
    quiet_wait: float
    quiet_threshold: float


def parse_args(argv: Sequence[str]) -> BenchSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_load", description=__doc__)
    parser.add_argument(
        "--target",
        nargs="+",
        choices=TARGETS,
        default=["relay"],
        help="what to put between load generator and echo upstream (default: relay)",
    )
    parser.add_argument(
        "--no-direct",
        action="store_true",
        help="do not also run the ramp with no relay (direct) for comparison",
    )
    parser.add_argument(
        "--steps",
        default=",".join(str(n) for n in DEFAULT_STEPS),
        help="comma-separated session counts (default: %(default)s)",
    )
    parser.add_argument("--step-seconds", type=float, default=10.0, help="streaming time per step")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="excluded from latency")
    parser.add_argument("--grace-seconds", type=float, default=2.0, help="wait for stragglers")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="hard cap for the run")
    parser.add_argument("--connect-concurrency", type=int, default=32)
    parser.add_argument(
        "--slot-ms",
        type=int,
        choices=(1, 2, 4, 5, 10),
        default=2,
        help="send-schedule granularity within each 20 ms period (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="run larger steps even after a broken one"
    )
    parser.add_argument("--json", dest="json_path", help="also write results as JSON ('-': stdout)")
    parser.add_argument(
        "--markdown", dest="markdown_path", help="also write the tables as Markdown (for README)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each step, wait up to this many seconds for the machine to be quiet "
        "(useful on a shared machine; default: do not wait)",
    )
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.15,
        help="'quiet' = all CPUs together less busy than this share (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        steps = tuple(int(s) for s in args.steps.split(",") if s.strip())
    except ValueError:
        parser.error("--steps must be comma-separated integers")
    if not steps or any(n < 1 or n > 5000 for n in steps):
        parser.error("--steps must be 1..5000 sessions each")
    if not 0 < args.step_seconds <= 120:
        parser.error("--step-seconds must be in (0, 120]")
    if not 0 <= args.warmup_seconds < args.step_seconds:
        parser.error("--warmup-seconds must be shorter than --step-seconds")
    targets = list(dict.fromkeys(args.target))
    if not args.no_direct and "direct" not in targets:
        targets.append("direct")
    return BenchSettings(
        targets=tuple(targets),
        steps=steps,
        step_seconds=args.step_seconds,
        warmup_seconds=args.warmup_seconds,
        grace_seconds=args.grace_seconds,
        max_seconds=args.max_seconds,
        connect_concurrency=args.connect_concurrency,
        slot_ms=args.slot_ms,
        keep_going=args.keep_going,
        json_path=args.json_path,
        markdown_path=args.markdown_path,
        pin=not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None,
        quiet_wait=max(0.0, args.quiet_wait),
        quiet_threshold=args.quiet_threshold,
    )


# The run


class Bench:
    """Runs the ramp for each target with a fresh echo upstream and target process."""

    def __init__(self, settings: BenchSettings, children: Children, workdir: Path) -> None:
        self.settings = settings
        self.children = children
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(48)
        self.deadline = time.monotonic() + settings.max_seconds
        self.relay_core = RELAY_CORE if settings.pin else None
        self.harness_core = HARNESS_CORE if settings.pin else None
        self.wsload: Path | None = None

    def run(self) -> list[TargetResult]:
        self.wsload = compile_wsload(self.workdir)
        if self.settings.pin:
            os.sched_setaffinity(0, {HARNESS_CORE})
        return [self.run_target(target) for target in self.settings.targets]

    def harness_argv(self, mode: str) -> list[str]:
        """The command of the echo upstream (``echo``) or the load generator (``loadgen``)."""
        assert self.wsload is not None, "run() compiles the harness first"
        command = [str(self.wsload), mode] + (["--port", "0"] if mode == "echo" else [])
        return [*_pin(self.harness_core), *command]

    # Lifecycle of one target

    def run_target(self, target: str) -> TargetResult:
        result = TargetResult(target=target)
        echo = self.start_echo()
        try:
            echo_url = LineReader(echo).readline(time.monotonic() + START_TIMEOUT).split()[-1]
            target_proc, url = self.start_target(target, echo_url)
            try:
                if target_proc is not None:
                    result.baseline_rss_kb = rss_kb(target_proc.pid)
                    idle_sockets = socket_count(target_proc.pid)
                for n in self.settings.steps:
                    if not self.time_left_for(n):
                        result.note = f"stopped before {n} sessions: --max-seconds reached"
                        break
                    busy = self.wait_for_quiet()
                    step = self.run_step(n, url, target, target_proc, echo, result)
                    step.machine_busy_before = busy
                    result.steps.append(step)
                    print(format_step(target, step), file=sys.stderr, flush=True)
                    if target_proc is not None:
                        if target_proc.poll() is not None:
                            result.note = f"target exited with {target_proc.returncode}"
                            break
                        self.settle(target_proc.pid, idle_sockets)
                    if not self.settings.keep_going and broken(step):
                        result.note = f"stopped after {n} sessions: that step was broken"
                        break
            finally:
                if target_proc is not None:
                    code = self.children.stop(target_proc)
                    if code not in (0, -signal.SIGTERM):
                        note = f"target exit code {code}"
                        result.note = f"{result.note}; {note}" if result.note else note
        finally:
            self.children.stop(echo)
        return result

    def start_echo(self) -> subprocess.Popen[bytes]:
        return self.children.start(self.harness_argv("echo"))

    def start_target(
        self, target: str, echo_url: str
    ) -> tuple[subprocess.Popen[bytes] | None, str]:
        if target == "direct":
            return None, echo_url
        port = free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "RELAY_HOST": "127.0.0.1",
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "OPENAI_REALTIME_URL": echo_url,
            "RELAY_TOKEN_SECRET": self.secret,
            "RELAY_MAX_SESSIONS": str(max(self.settings.steps) + 100),
            "RELAY_MAX_SESSIONS_PER_SUBJECT": "1",
            "DRAIN_SECONDS": "2",
            # The harness ends a step's clients without close frames: do not hold their
            # sessions for a re-attach (they would fill the next step's places).
            "RELAY_REATTACH_SECONDS": "0",
            "RELAY_METRICS_SERVICE": "relay-bench",
            "LOG_LEVEL": "INFO",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for name in ("TABLE_NAME", "AGENT_CONFIG", "ECS_AGENT_URI", "PYTHONASYNCIODEBUG"):
            env.pop(name, None)
        module = TARGET_MODULES[target]
        if target == "native":
            if not list(NATIVE_BUILD.glob("relay/session.*.so")):
                raise BenchError(f"no compiled relay in {NATIVE_BUILD}: run `make native` first")
            # The build's copy of the relay (with its extensions) first; bench/ stays importable.
            env["PYTHONPATH"] = os.pathsep.join([str(NATIVE_BUILD), str(ROOT)])
        log = (self.workdir / f"{target}.log").open("wb")
        proc = self.children.start(
            [*_pin(self.relay_core), sys.executable, "-m", module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_healthy(port, proc, time.monotonic() + START_TIMEOUT)
        except BenchError as exc:
            raise BenchError(f"{exc}; log tail:\n{self.log_tail(target)}") from None
        return proc, f"ws://127.0.0.1:{port}/v1/realtime"

    def log_tail(self, target: str, lines: int = 20) -> str:
        path = self.workdir / f"{target}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def settle(self, pid: int, idle_sockets: int) -> None:
        """Wait until the target has closed the step's sockets (bounded)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if socket_count(pid) <= idle_sockets:
                    return
            except OSError:
                return
            time.sleep(0.1)

    def wait_for_quiet(self) -> float:
        """Wait (bounded by --quiet-wait and the run's deadline) for other work to calm down.

        Returns the last busy share seen (our own idle children included, which cost ~0).
        """
        busy = machine_busy(0.5)
        deadline = min(time.monotonic() + self.settings.quiet_wait, self.deadline - 60)
        while busy > self.settings.quiet_threshold and time.monotonic() < deadline:
            busy = machine_busy(1.0)
        return busy

    def step_budget(self, sessions: int) -> float:
        s = self.settings
        return 20.0 + sessions * 0.1 + s.step_seconds + s.grace_seconds + 10.0 + s.quiet_wait

    def time_left_for(self, sessions: int) -> bool:
        return time.monotonic() + self.step_budget(sessions) <= self.deadline

    # One step

    def run_step(
        self,
        sessions: int,
        url: str,
        target: str,
        target_proc: subprocess.Popen[bytes] | None,
        echo: subprocess.Popen[bytes],
        totals: TargetResult,
    ) -> StepResult:
        step = StepResult(sessions=sessions)
        run_id = secrets.token_hex(4)
        tokens_for = (
            None
            if target == "direct"
            else [
                tokens.mint(self.secret, f"bench-{run_id}-{i}", TOKEN_TTL_SECONDS)
                for i in range(sessions)
            ]
        )
        request = {
            "url": url,
            "tokens": tokens_for,
            "sessions": sessions,
            "seconds": self.settings.step_seconds,
            "warmup_seconds": self.settings.warmup_seconds,
            "grace_seconds": self.settings.grace_seconds,
            "connect_timeout_seconds": 10,
            "connect_concurrency": self.settings.connect_concurrency,
            "slot_ms": self.settings.slot_ms,
        }
        stderr = (self.workdir / "loadgen.err").open("wb")
        loadgen = self.children.start(self.harness_argv("loadgen"), stderr=stderr)
        stderr.close()
        deadline = time.monotonic() + self.step_budget(sessions)
        try:
            assert loadgen.stdin is not None
            loadgen.stdin.write(
                wsload_request(request) if self.wsload else json.dumps(request).encode()
            )
            loadgen.stdin.close()
            reader = LineReader(loadgen)
            marks: dict[str, dict[str, float]] = {}
            while True:
                event = json.loads(reader.readline(deadline))
                name = event["event"]
                if name in ("streaming", "stopped"):
                    marks[name] = self.sample(target_proc, loadgen, echo)
                    if name == "stopped" and target_proc is not None:
                        step.relay_rss_kb = rss_kb(target_proc.pid)
                if name == "connected":
                    step.connect_seconds = float(event["connect_seconds"])
                if name == "result":
                    self.absorb(step, event)
                    break
            if "streaming" in marks and "stopped" in marks:
                self.derive(step, marks["streaming"], marks["stopped"], totals)
        except (BenchError, OSError, ValueError, KeyError) as exc:
            err = (self.workdir / "loadgen.err").read_text(errors="replace")[-2000:]
            step.error = f"{exc}" + (f"; loadgen stderr: {err}" if err else "")
        finally:
            self.children.stop(loadgen, timeout=5.0)
            with contextlib.suppress(ValueError):
                self.children.procs.remove(loadgen)
        return step

    @staticmethod
    def sample(
        target_proc: subprocess.Popen[bytes] | None,
        loadgen: subprocess.Popen[bytes],
        echo: subprocess.Popen[bytes],
    ) -> dict[str, Any]:
        return {
            "time": time.monotonic(),
            "relay": cpu_sample(target_proc.pid) if target_proc is not None else None,
            "loadgen": cpu_sample(loadgen.pid),
            "echo": cpu_sample(echo.pid),
        }

    @staticmethod
    def absorb(step: StepResult, event: dict[str, Any]) -> None:
        rtt = event["rtt_ms"]
        step.connected = int(event["connected"])
        step.connect_failures = int(event["connect_failures"])
        step.first_connect_failure = event.get("first_connect_failure")
        step.sent = int(event["sent"])
        step.received = int(event["received"])
        step.expected = int(event["expected"])
        step.stalled = int(event["stalled"])
        step.late_skips = int(event["late_skips"])
        step.reorders = int(event["reorders"])
        step.unmatched = int(event["unmatched"])
        step.error_events = int(event["error_events"])
        step.first_error = event.get("first_error")
        step.closed_while_streaming = int(event["closed_while_streaming"])
        step.samples = int(event["samples"])
        step.p50_ms, step.p90_ms = rtt["p50"], rtt["p90"]
        step.p99_ms, step.p999_ms, step.max_ms = rtt["p99"], rtt["p999"], rtt["max"]
        step.loadgen_loop_max_lag_ms = float(event["loop_max_lag_ms"])

    @staticmethod
    def derive(
        step: StepResult, start: dict[str, Any], stop: dict[str, Any], totals: TargetResult
    ) -> None:
        window = max(1e-6, stop["time"] - start["time"])
        step.window_seconds = window
        step.loadgen_cpu_seconds = stop["loadgen"].run - start["loadgen"].run
        step.echo_cpu_seconds = stop["echo"].run - start["echo"].run
        step.harness_core_share = (step.loadgen_cpu_seconds + step.echo_cpu_seconds) / window
        harness_wait = (
            stop["loadgen"].wait - start["loadgen"].wait + stop["echo"].wait - start["echo"].wait
        )
        step.harness_runqueue_share = harness_wait / window
        if start["relay"] is not None and stop["relay"] is not None:
            step.relay_cpu_seconds = stop["relay"].run - start["relay"].run
            step.relay_cpu_share = step.relay_cpu_seconds / window
            step.relay_runqueue_share = (stop["relay"].wait - start["relay"].wait) / window
            if step.relay_rss_kb is not None and totals.baseline_rss_kb is not None:
                above = step.relay_rss_kb - totals.baseline_rss_kb
                step.rss_kb_per_session = above / max(1, step.connected)


def broken(step: StepResult) -> bool:
    """A step so far past capacity that larger ones would only burn time."""
    if step.error is not None or step.connected == 0:
        return True
    lost_fraction = step.lost / max(1, step.sent)
    refused = step.connect_failures / step.sessions
    return (
        lost_fraction > GIVE_UP_LOSS_FRACTION
        or refused > GIVE_UP_LOSS_FRACTION
        or (step.p99_ms is not None and step.p99_ms > GIVE_UP_P99_MS)
    )


# Reporting


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_step(target: str, s: StepResult) -> str:
    """One progress line on stderr while the ramp runs."""
    if s.error:
        return f"[{target}] {s.sessions} sessions: ERROR {s.error}"
    return (
        f"[{target}] {s.sessions} sessions: p50 {_fmt(s.p50_ms)} ms, p99 {_fmt(s.p99_ms)} ms, "
        f"lost {s.lost}/{s.sent}, relay core {_pct(s.relay_cpu_share)}%, "
        f"harness core {_pct(s.harness_core_share)}%"
    )


HEADER: Final = (
    f"{'sessions':>8} {'conn':>5} {'sent':>7} {'lost':>5} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'p99.9':>7} {'max':>7} {'relay s':>7} {'us/rt':>6} {'core0':>6} {'wait0':>6} {'rss MB':>7} "
    f"{'KB/sess':>7} {'lg s':>5} {'echo s':>6} {'core1':>6} {'wait1':>6} {'busy':>5}  verdict"
)
LEGEND: Final = """\
columns: lost = appends not echoed back + sends skipped on a backed-up socket;
  relay s = relay CPU seconds in the streaming window; us/rt = relay CPU µs per append relayed
  both ways; core0 = relay share of core 0 (%); wait0 = time the relay was runnable but waiting
  for core 0, i.e. squeezed by other work on the machine (%); rss MB / KB/sess = relay RSS and
  RSS above idle per live session; lg s, echo s, core1, wait1 = the same for the load generator
  and echo upstream on core 1 (core1 and wait1 add both processes up, so wait1 can pass 100);
  harness-bound = the load generator missed over 1 % of its sends or core 1 was over 90 % busy,
  so the relay was offered less than the nominal load; busy = share of both CPUs in use just
  before the step (other people's work on a shared machine)."""


def _pct(value: float | None) -> str:
    return _fmt(None if value is None else 100 * value, ".0f")


def table(result: TargetResult) -> str:
    """The ramp of one target as a fixed-width table."""
    rows = [f"target: {result.target}", HEADER]
    for s in result.steps:
        if s.error:
            rows.append(f"{s.sessions:>8}  error: {s.error[:300]}")
            continue
        verdict = "ok" if s.within_budget else ("slow" if s.lossless else "LOSS")
        if s.harness_bound:
            verdict += " (harness-bound)"
        rss_mb = None if s.relay_rss_kb is None else s.relay_rss_kb / 1024
        rows.append(
            f"{s.sessions:>8} {s.connected:>5} {s.sent:>7} {s.lost:>5} {_fmt(s.p50_ms):>7} "
            f"{_fmt(s.p99_ms):>7} {_fmt(s.p999_ms):>7} {_fmt(s.max_ms, '.1f'):>7} "
            f"{_fmt(s.relay_cpu_seconds):>7} {_fmt(s.relay_us_per_round_trip, '.1f'):>6} "
            f"{_pct(s.relay_cpu_share):>6} "
            f"{_pct(s.relay_runqueue_share):>6} {_fmt(rss_mb, '.1f'):>7} "
            f"{_fmt(s.rss_kb_per_session, '.1f'):>7} {s.loadgen_cpu_seconds:>5.2f} "
            f"{s.echo_cpu_seconds:>6.2f} {_pct(s.harness_core_share):>6} "
            f"{_pct(s.harness_runqueue_share):>6} {_pct(s.machine_busy_before):>5}  {verdict}"
        )
    if result.baseline_rss_kb is not None:
        rows.append(f"idle RSS: {result.baseline_rss_kb / 1024:.1f} MB")
    rows.append(
        f"capacity ({result.target}, largest step with p99 <= {P99_BUDGET_MS:g} ms and no "
        f"loss): {result.capacity_text()}"
    )
    if result.projected_capacity is not None:
        rows.append(
            f"projected ({result.target}): core 0 full at ~{result.projected_capacity} sessions "
            "(relay CPU per session at the largest step within budget, extrapolated linearly)"
        )
    if result.note:
        rows.append(f"note: {result.note}")
    return "\n".join(rows)


def markdown(results: list[TargetResult], added: dict[str, float]) -> str:
    """The tables as Markdown, the form bench/README.md records them in."""
    lines: list[str] = []
    for r in results:
        lines += [
            f"**{r.target}**: capacity {r.capacity_text()}"
            + (
                f"; projected core-0 saturation ~{r.projected_capacity} sessions"
                if r.projected_capacity is not None
                else ""
            )
            + (f"; idle RSS {r.baseline_rss_kb / 1024:.1f} MB" if r.baseline_rss_kb else "")
            + (f" ({r.note})" if r.note else ""),
            "",
            "| sessions | sent | lost | p50 ms | p99 ms | p99.9 ms | relay CPU s | µs/rt "
            "| core 0 % | wait 0 % | RSS MB | KB/session | core 1 % | wait 1 % | busy % "
            "| verdict |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for s in r.steps:
            if s.error:
                lines.append(f"| {s.sessions} | error: {s.error[:120]} |")
                continue
            verdict = "ok" if s.within_budget else ("slow" if s.lossless else "LOSS")
            if s.harness_bound:
                verdict += " (harness-bound)"
            rss_mb = None if s.relay_rss_kb is None else s.relay_rss_kb / 1024
            lines.append(
                f"| {s.sessions} | {s.sent} | {s.lost} | {_fmt(s.p50_ms)} | {_fmt(s.p99_ms)} "
                f"| {_fmt(s.p999_ms)} | {_fmt(s.relay_cpu_seconds)} "
                f"| {_fmt(s.relay_us_per_round_trip, '.1f')} | {_pct(s.relay_cpu_share)} "
                f"| {_pct(s.relay_runqueue_share)} | {_fmt(rss_mb, '.1f')} "
                f"| {_fmt(s.rss_kb_per_session, '.1f')} | {_pct(s.harness_core_share)} "
                f"| {_pct(s.harness_runqueue_share)} | {_pct(s.machine_busy_before)} | {verdict} |"
            )
        lines.append("")
    for name, value in added.items():
        lines.append(f"Added p50 at 100 sessions ({name} vs direct): {value:+.3f} ms")
    return "\n".join(lines).rstrip() + "\n"


def step_at(result: TargetResult, sessions: int) -> StepResult | None:
    return next((s for s in result.steps if s.sessions == sessions and s.p50_ms is not None), None)


def added_p50(results: list[TargetResult], sessions: int = 100) -> dict[str, float]:
    """p50 a relay adds over direct at ``sessions`` (when both ran that step)."""
    direct = next((r for r in results if r.target == "direct"), None)
    base = step_at(direct, sessions) if direct else None
    if base is None or base.p50_ms is None:
        return {}
    added: dict[str, float] = {}
    for r in results:
        s = step_at(r, sessions)
        if r.target != "direct" and s is not None and s.p50_ms is not None:
            added[r.target] = s.p50_ms - base.p50_ms
    return added


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    compiler = c_compiler()
    cc_version = "missing"
    if compiler is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
            cc_version = subprocess.run(
                [compiler, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.splitlines()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "cc": cc_version,
        "loadavg": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def harness_text(info: dict[str, Any]) -> str:
    """Which echo upstream + load generator ran, for the printed header."""
    return f"c (bench/wsload.c built with {info['cc']})"


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ramp, print the tables, optionally write JSON; 0 unless the harness failed."""
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    # Ctrl-C and SIGTERM both unwind through the ``finally`` that stops every child, even
    # when this process was started with SIGINT ignored (as background jobs are).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    info = machine()
    children = Children()
    results: list[TargetResult] = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        try:
            results = Bench(settings, children, Path(tmp)).run()
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            children.stop_all()
    info["loadavg_end"] = os.getloadavg()
    # With --json - the JSON owns stdout and the human tables go to stderr.
    out = sys.stderr if settings.json_path == "-" else sys.stdout
    pinning = "relay on core 0, load generator + echo upstream on core 1" if settings.pin else "off"
    print(
        f"machine: {info['nproc']} cpus ({info['cpu_model']}), Python {info['python']}, "
        f"load {info['loadavg'][0]:.2f} at start, "
        f"{info['loadavg_end'][0]:.2f} at end, {info['date']}",
        file=out,
    )
    print(f"harness: {harness_text(info)}", file=out)
    print(
        f"pinning: {pinning}; {settings.step_seconds:g} s per step, "
        f"first {settings.warmup_seconds:g} s excluded from latency",
        file=out,
    )
    for r in results:
        print(file=out)
        print(table(r), file=out)
    print(file=out)
    print(LEGEND, file=out)
    added = added_p50(results)
    if added:
        print(file=out)
        for name, value in added.items():
            print(f"added p50 at 100 sessions ({name} vs direct): {value:+.3f} ms", file=out)
    if settings.markdown_path:
        Path(settings.markdown_path).write_text(markdown(results, added))
    if settings.json_path:
        document = {
            "harness": "c",
            "machine": info,
            "settings": asdict(settings),
            "targets": [r.as_json() for r in results],
            "added_p50_ms_at_100": added,
        }
        text = json.dumps(document, indent=2)
        if settings.json_path == "-":
            print(text)
        else:
            Path(settings.json_path).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
