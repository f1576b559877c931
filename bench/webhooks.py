"""Benchmark: the webhook receiver (FastAPI + Mangum) against a bare Powertools resolver.

Run ``python -m bench.webhooks`` (``make bench``); it needs nothing but the venv: it
starts moto's DynamoDB server on loopback and measures, in the same run, for
``functions.webhooks.app`` and ``bench.resolver_handler`` (same checks, same writes):

1. **cold start** — fresh processes, ``--cold-runs`` each, interleaved, median: time to
   import the handler module, and to import it *and* answer a first signed delivery (what
   Recall waits for on a cold start: settings, boto3, event models, two DynamoDB writes);
2. **warm Lambda invocations** — one process each, ``--invocations`` sequential API Gateway
   v2 events through the Lambda handler: p50/p99 per invocation;
3. **HTTP on one uvicorn worker** — ``--requests`` signed deliveries at concurrency 1 and
   ``--concurrency``: stored deliveries/s, p50/p99 of the 200 answers, and how many were
   503 (the resolver, being Lambda-shaped, is served one event at a time through a thin
   ASGI bridge).

Every loop is bounded in count and in time; every socket is on 127.0.0.1. The top of this
module imports only the standard library, so the ``--child`` process times the handler's
imports from a clean start.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "fastapi+mangum": ("functions.webhooks.app:handler", "functions.webhooks.app:app"),
    "bare resolver": ("bench.resolver_handler:handler", "bench.resolver_handler:asgi_app"),
}
DEADLINE_SECONDS = 180.0


class Context:
    """The Lambda context attributes Powertools reads."""

    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


# Child: one cold process


def child(target: str, events_path: str) -> None:
    """Import ``target``, answer the first event, then time the rest; print one BENCH line."""
    events = json.loads(Path(events_path).read_text())
    started, started_cpu = time.perf_counter(), time.process_time()
    module_name, attr = target.split(":")
    handler = getattr(importlib.import_module(module_name), attr)
    imported, imported_cpu = time.perf_counter(), time.process_time()
    first = handler(events[0], Context())
    answered, answered_cpu = time.perf_counter(), time.process_time()
    latencies = []
    statuses = [first["statusCode"]]
    for event in events[1:]:
        t0 = time.perf_counter()
        statuses.append(handler(event, Context())["statusCode"])
        latencies.append((time.perf_counter() - t0) * 1000)
    result = {
        "import_ms": (imported - started) * 1000,
        "first_answer_ms": (answered - started) * 1000,
        # CPU time of this process only: robust to other load on a shared machine.
        "import_cpu_ms": (imported_cpu - started_cpu) * 1000,
        "first_answer_cpu_ms": (answered_cpu - started_cpu) * 1000,
        "latencies_ms": latencies,
        "statuses": statuses,
    }
    print("BENCH " + json.dumps(result), flush=True)


# Parent


def signed_events(
    secret: str, count: int
) -> tuple[list[dict[str, Any]], list[tuple[bytes, dict[str, str]]]]:
    """``count`` signed bot status deliveries for fresh bots, as v2 events and as HTTP requests."""
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    signer = Webhook(secret)
    events, requests = [], []
    for _ in range(count):
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "event": "bot.in_call_recording",
                "data": {
                    "data": {
                        "code": "in_call_recording",
                        "sub_code": None,
                        "updated_at": now.isoformat().replace("+00:00", "Z"),
                    },
                    "bot": {"id": str(uuid.uuid4()), "metadata": {"session_id": "bench"}},
                },
            },
            separators=(",", ":"),
        ).encode()
        webhook_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(webhook_id, now, body.decode()),
        }
        requests.append((body, headers))
        events.append(
            {
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": "/webhooks/recall",
                "rawQueryString": "",
                "headers": {**headers, "content-length": str(len(body)), "host": "bench"},
                "requestContext": {
                    "http": {"method": "POST", "path": "/webhooks/recall", "sourceIp": "127.0.0.1"},
                    "stage": "$default",
                    "requestId": uuid.uuid4().hex,
                },
                "body": body.decode(),
                "isBase64Encoded": False,
            }
        )
    return events, requests


def run_child(target: str, env: dict[str, str], secret: str, count: int) -> dict[str, Any]:
    """One fresh process answering ``count`` events; its BENCH result."""
    events, _ = signed_events(secret, count)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(events, handle)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.webhooks", "--child", target, handle.name],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line[6:])
            unexpected = sorted(set(result["statuses"]) - {200, 503})
            if unexpected:
                raise RuntimeError(f"{target} answered {unexpected}")
            result["retryable_503"] = result["statuses"].count(503)
            return result
    raise RuntimeError(f"{target} printed no result: {proc.stderr[-500:]}")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child we started, then kill it if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def moto_server() -> Any:
    """moto's server on a free loopback port, stopped by PID."""
    from tests.conftest import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, time.monotonic() + 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def uvicorn_server(target: str, env: dict[str, str]) -> Any:
    """``uvicorn <target>`` with one worker on a free loopback port."""
    from tests.conftest import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            "--lifespan",
            "off",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, time.monotonic() + 60, proc)
        yield f"http://127.0.0.1:{port}/webhooks/recall"
    finally:
        stop(proc)


async def load(
    url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> dict[str, float]:
    """POST every request with at most ``concurrency`` in flight; rate and latency."""
    import asyncio

    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue(maxsize=len(requests))
    for item in requests:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=15.0, trust_env=False) as client:

        async def worker() -> None:
            while True:
                try:
                    body, headers = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                if response.status_code == 200:  # stored: what the figures describe
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    failures.append(f"{response.status_code} {response.text[:120]}")

        started = time.perf_counter()
        async with asyncio.timeout(DEADLINE_SECONDS):
            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(worker())
        wall = time.perf_counter() - started
    unexpected = [f for f in failures if not f.startswith("503 ")]
    if unexpected:
        raise RuntimeError(f"{len(unexpected)} requests to {url} failed, e.g. {unexpected[:3]}")
    return {
        "retryable_503": float(len(failures)),
        "rps": len(latencies) / wall,  # stored deliveries per second
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a Markdown report."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--cold-runs", type=int, default=11)
    parser.add_argument("--invocations", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    # Above 1, moto's server races on concurrent transactions (its tables are plain dicts)
    # and some deliveries are answered 503: the figures then describe moto, not the apps.
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("TARGET", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return

    import asyncio
    import base64
    import secrets

    from tests.conftest import create_table

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    # Fake credentials: everything talks to the local moto server only.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    load_before = os.getloadavg()
    with moto_server() as endpoint:

        def fresh(env: dict[str, str]) -> dict[str, str]:
            # moto deep-copies a table on every transaction, so a request's cost grows with
            # the table: each measured block gets its own empty table, for both handlers.
            table = f"bench-{uuid.uuid4().hex[:8]}"
            create_table(endpoint, table)
            return {**env, "TABLE_NAME": table}

        env = {
            **os.environ,
            "RECALL_WEBHOOK_SECRET": secret,
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "bench",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench/Webhooks",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.pop("RECALL_WEBHOOK_SECRET_ARN", None)

        cold: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
        for _ in range(args.cold_runs):  # interleaved, so drift in machine load hits both
            for name, (handler_target, _) in TARGETS.items():
                cold[name].append(run_child(handler_target, fresh(env), secret, 1))
        warm = {
            name: run_child(handler_target, fresh(env), secret, args.invocations + 1)
            for name, (handler_target, _) in TARGETS.items()
        }
        http: dict[str, dict[int, dict[str, float]]] = {}
        for name, (_, asgi_target) in TARGETS.items():
            http[name] = {}
            with uvicorn_server(asgi_target, fresh(env)) as url:
                _, warmup = signed_events(secret, 20)
                asyncio.run(load(url, warmup, 4))
                for concurrency in sorted({1, args.concurrency}):
                    _, requests = signed_events(secret, args.requests)
                    http[name][concurrency] = asyncio.run(load(url, requests, concurrency))
    load_after = os.getloadavg()

    print(f"# bench.webhooks — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; load average {load_before[0]:.1f} → "
        f"{load_after[0]:.1f}"
    )
    print(
        f"command: python -m bench.webhooks --cold-runs {args.cold_runs} --invocations "
        f"{args.invocations} --requests {args.requests} --concurrency {args.concurrency}"
    )
    print()
    print("| measure | fastapi+mangum | bare resolver | ratio |")
    print("|---|---|---|---|")

    def row(label: str, a: float, b: float, unit: str) -> None:
        ratio = f"{a / b:.2f}×" if b else "–"
        print(f"| {label} | {a:.1f} {unit} | {b:.1f} {unit} | {ratio} |")

    names = list(TARGETS)
    for key, label in (
        ("import_ms", "cold import (median)"),
        ("first_answer_ms", "cold import + first answer (median)"),
        ("import_cpu_ms", "cold import, CPU time (median)"),
        ("first_answer_cpu_ms", "cold import + first answer, CPU time (median)"),
    ):
        a, b = (statistics.median(r[key] for r in cold[n]) for n in names)
        row(label, a, b, "ms")
    for frac, label in ((0.5, "warm Lambda invocation p50"), (0.99, "warm Lambda invocation p99")):
        a, b = (percentile(warm[n]["latencies_ms"], frac) for n in names)  # 503s included
        row(label, a, b, "ms")
    a, b = (float(warm[n]["retryable_503"]) for n in names)
    row("warm Lambda invocations answered 503 (moto; Recall retries)", a, b, "")
    a, b = (float(sum(r["retryable_503"] for r in cold[n])) for n in names)
    row("cold first answers that were 503", a, b, "")
    for concurrency in sorted({1, args.concurrency}):
        for key, label, unit in (
            ("rps", "stored/s", "/s"),
            ("p50_ms", "p50", "ms"),
            ("p99_ms", "p99", "ms"),
            ("retryable_503", "503 answers (moto races, retried by Recall)", ""),
        ):
            a, b = (http[n][concurrency][key] for n in names)
            row(f"uvicorn, concurrency {concurrency}: {label}", a, b, unit)
    print()
    print("cold runs (import / first answer, wall ms; CPU ms in brackets):")
    for name in names:
        runs = ", ".join(
            f"{r['import_ms']:.0f}/{r['first_answer_ms']:.0f} "
            f"[{r['import_cpu_ms']:.0f}/{r['first_answer_cpu_ms']:.0f}]"
            for r in cold[name]
        )
        print(f"- {name}: {runs}")


if __name__ == "__main__":
    main()
