"""``python -m relay``: read the config once, log JSON, serve until SIGTERM, drain, exit 0."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from relay.config import RelayConfig
from relay.errors import ConfigError
from relay.logs import configure_logging
from relay.server import serve

logger = logging.getLogger("relay")


async def _main(config: RelayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop)


def main() -> int:
    """Entry point; returns the process exit code."""
    try:
        config = RelayConfig.from_env(os.environ)
    except ConfigError as exc:
        configure_logging()
        logger.error("invalid configuration", extra={"problems": exc.problems})
        return 2
    configure_logging(config.log_level)
    try:
        asyncio.run(_main(config))
    except ConfigError as exc:
        logger.error("invalid configuration", extra={"problems": exc.problems})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
