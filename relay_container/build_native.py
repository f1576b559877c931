"""Compile the relay's per-message modules with mypyc: what the image ships, what CI tests.

Owns: the list of compiled modules and how they are built. Every relayed message runs
``wire`` (framing), ``session`` (the shell's socket callbacks), ``core`` / ``core_client``
/ ``core_moves`` / ``core_legs`` / ``upstream_leg`` / ``client_leg`` / ``rollover_legs`` /
``client_events`` / ``effects`` (the session core), ``events`` (the type sniffers) and
``metrics`` (the delay histogram); compiled, they execute about half the instructions per
audio round trip (bench/README.md, "Relay").
Everything else stays interpreted. The sources are the same
files: the build copies the ``relay`` package (and ``storage``, which it imports) into
``--out``, compiles there, and leaves the extension modules beside the sources, where
Python's import system prefers them. Nothing is written into the source tree, so an
editable checkout keeps running the ``.py`` files.

Usage (mypy from the ``dev`` extra, a C compiler and the relay's dependencies installed)::

    python relay_container/build_native.py --out build/native
    PYTHONPATH=build/native python -m relay

The relay logs ``"compiled": true`` at start-up when it runs this build.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

SOURCE: Final = Path(__file__).resolve().parent
#: Compiled, relative to the output directory; order does not matter.
MODULES: Final = (
    "relay/wire.py",
    "relay/session.py",
    "relay/session_legs.py",
    "relay/core.py",
    "relay/core_client.py",
    "relay/core_moves.py",
    "relay/core_legs.py",
    "relay/upstream_leg.py",
    "relay/rollover_legs.py",
    "relay/client_leg.py",
    "relay/client_events.py",
    "relay/effects.py",
    "relay/events.py",
    "relay/metrics.py",
    "relay/turn_timing.py",
)
#: mypyc runs mypy first; without a config file its defaults apply, and a dependency
#: without type information (boto3 without stubs in the image) is treated as Any.
MYPYC_FLAGS: Final = ("--ignore-missing-imports", "--no-incremental")


class BuildError(Exception):
    """The native build could not be made; the message says why."""


def packages(source: Path) -> dict[str, Path]:
    """The package directories to copy, by name, checked to exist."""
    found = {"relay": source / "relay", "storage": source.parent / "storage"}
    for name, path in found.items():
        if not (path / "__init__.py").is_file():
            raise BuildError(f"package {name!r} not found at {path}")
    return found


def build(out: Path, source: Path = SOURCE, python: str = sys.executable) -> list[Path]:
    """Build into ``out`` (replaced if it holds an earlier build); returns the extensions."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not (out / "relay").is_dir():
        raise BuildError(
            f"--out {out} is not empty and holds no earlier build: refusing to clear it"
        )
    roots = packages(source)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    for name, path in roots.items():
        shutil.copytree(path, out / name, ignore=ignore)
    command = [python, "-m", "mypyc", *MYPYC_FLAGS, *MODULES]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise BuildError("mypyc failed:\n" + "\n".join(tail))
    shutil.rmtree(out / "build", ignore_errors=True)  # C sources and objects
    extensions = sorted(out.glob("**/*.so"))
    compiled = {p.name.split(".")[0] for p in extensions}
    missing = [m for m in MODULES if Path(m).stem not in compiled]
    if missing:
        raise BuildError(f"mypyc produced no extension for {', '.join(missing)}")
    return extensions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python relay_container/build_native.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to build into")
    args = parser.parse_args(argv)
    try:
        extensions = build(args.out)
    except BuildError as exc:
        print(f"build_native: {exc}", file=sys.stderr)
        return 1
    print(f"build_native: {len(extensions)} extension modules in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
