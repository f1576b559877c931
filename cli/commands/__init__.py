"""The ``voicebot`` commands, a module per group or command; ``cli.main`` assembles them."""
