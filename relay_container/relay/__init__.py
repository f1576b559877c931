"""The relay: an authenticated, GA-speaking WebSocket bridge to OpenAI Realtime.

Run as ``python -m relay`` (configuration: ``relay.config.ENV_VARS``). One module, one idea:

- ``__main__``: config once, JSON logs, serve until SIGTERM, drain, exit 0.
- ``config``: ``RelayConfig.from_env`` — the only reader of the environment.
- ``server``: the listener; HTTP request → page, refusal, or 101 + session; the drain.
- ``pages``: ``/healthz``, ``/`` and ``/static/*`` (the agent page folder).
- ``auth``: the relay token from Bearer / subprotocol / ``?token=``; subprotocol choice.
- ``admission``: per-process and per-subject session limits.
- ``session``: one relayed session — both sockets, frames, limits, closes, back-pressure.
- ``upstream``: the GA handshake with OpenAI (no beta header, no compression).
- ``wire``: WebSocket frame parsing and encoding for the hot path (pure).
- ``events``: ``peek_type`` and OpenAI-shaped ``error`` events (pure).
- ``policy``: locked session fields a client may not set.
- ``agent``: ``AgentConfig`` (AGENT_CONFIG file) → the first ``session.update``.
- ``errors``: every refusal and fault with its HTTP status / close code / error code.
- ``logs``, ``metrics``, ``protection``: JSON logs, EMF metrics, ECS scale-in protection.
- ``records``, ``conversation``: session records in DynamoDB, the conversation for resume.
- ``tokens``: the relay token format (shared with the CLI); ``simulator``: a local GA model.
"""
