"""``python -m cli``: the same as the ``voicebot`` console script."""

from cli.main import main

main()
