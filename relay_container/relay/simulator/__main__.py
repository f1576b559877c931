"""``python -m relay.simulator`` (see ``relay.simulator.command``)."""

from relay.simulator.command import main

main()
