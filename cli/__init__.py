"""The ``voicebot`` command: create Recall bots, mint relay tokens, show state, run locally."""
