"""The relay image's build context holds only what the image needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from infra.app import PROJECT_ROOT
from tests.infra.conftest import Synthesized

#: What `docker build` may see: the pins, the Dockerfile, the relay and storage packages and
#: the script that compiles the relay's per-message modules.
ALLOWED_ROOTS = (
    "pyproject.toml",
    ".dockerignore",
    "relay_container/Dockerfile",
    "relay_container/agent.yaml",
    "relay_container/build_native.py",
)
ALLOWED_DIRS = ("relay_container/relay/", "storage/")


def _staged_context(synthesized: Synthesized) -> Path:
    assets = json.loads(
        (synthesized.outdir / f"{synthesized.stack.stack_name}.assets.json").read_text()
    )
    (image,) = assets["dockerImages"].values()
    return synthesized.outdir / str(image["source"]["directory"])


def test_build_context_holds_only_pins_relay_and_storage(synthesized: Synthesized) -> None:
    """No .venv, tests, cdk.out, .env or other code is sent to Docker or baked into the image."""
    context = _staged_context(synthesized)
    files = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
    unexpected = [f for f in files if f not in ALLOWED_ROOTS and not f.startswith(ALLOWED_DIRS)]
    assert unexpected == []
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or "/tests/" in f]


def test_build_context_holds_every_relay_and_storage_source(synthesized: Synthesized) -> None:
    """Every module and static asset of the relay and storage packages is in the image."""
    context = _staged_context(synthesized)
    for package in ("relay_container/relay", "storage"):
        sources = [
            p.relative_to(PROJECT_ROOT).as_posix()
            for p in (PROJECT_ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
        assert sources
        missing = [s for s in sources if not (context / s).is_file()]
        assert missing == []
    assert (context / "pyproject.toml").is_file()
    assert (context / "relay_container" / "Dockerfile").is_file()
    assert (context / "relay_container" / "agent.yaml").is_file()


def test_image_runs_the_repositorys_agent_configuration() -> None:
    """The deployed relay applies relay_container/agent.yaml, the file users edit."""
    dockerfile = (PROJECT_ROOT / "relay_container" / "Dockerfile").read_text()
    assert "COPY relay_container/agent.yaml /app/agent.yaml" in dockerfile
    assert "ENV AGENT_CONFIG=/app/agent.yaml" in dockerfile


def test_dockerfile_installs_only_the_relay_pins_and_runs_unprivileged() -> None:
    """The image installs the `relay` extra from pyproject.toml and runs as a non-root user."""
    dockerfile = (PROJECT_ROOT / "relay_container" / "Dockerfile").read_text()
    assert "tomllib" in dockerfile
    assert "['optional-dependencies']['relay']" in dockerfile
    assert "--only-binary=:all:" in dockerfile
    assert "\nUSER 10001\n" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["python", "-m", "relay"]')
    assert "PYTHONUNBUFFERED=1" in dockerfile
    assert dockerfile.startswith("#")
    assert "FROM python:3.14-slim@sha256:" in dockerfile


def test_every_base_image_is_pinned_by_digest() -> None:
    """A rebuild gets the same base image: each external FROM names a sha256 digest."""
    dockerfile = (PROJECT_ROOT / "relay_container" / "Dockerfile").read_text()
    stage_names = {
        line.split(" AS ")[1].strip()
        for line in dockerfile.splitlines()
        if line.startswith("FROM ") and " AS " in line
    }
    external = [
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("FROM ") and line.split()[1] not in stage_names
    ]
    assert external
    for image in external:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


def _stages(dockerfile: str) -> list[str]:
    """The Dockerfile's stages, each from its FROM line to the next."""
    parts = dockerfile.split("\nFROM ")
    return ["FROM " + part for part in parts[1:]]


def test_image_ships_the_compiled_relay_and_no_compiler() -> None:
    """A build stage compiles the relay with build_native.py; the image keeps only its output."""
    dockerfile = (PROJECT_ROOT / "relay_container" / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert len(stages) == 3
    build = next(s for s in stages if s.startswith("FROM runtime-deps AS native"))
    assert "['optional-dependencies']['native']" in build
    assert "RUN python /src/relay_container/build_native.py --out /native" in build
    final = stages[-1]
    assert final.startswith("FROM runtime-deps\n")
    assert "COPY --from=native /native/ /app/" in final
    instructions = "\n".join(x for x in final.splitlines() if not x.startswith("#"))
    for tool in ("gcc", "mypy", "apt-get", "'native'"):
        assert tool not in instructions
