"""The relay: an authenticated, GA-speaking WebSocket bridge to OpenAI Realtime.

Run as ``python -m relay`` (configuration: ``relay.config.ENV_VARS``). One module, one idea:

- ``__main__``: config once, JSON logs, serve until SIGTERM, drain, exit 0.
- ``config``: ``RelayConfig.from_env`` — the only reader of the environment.
- ``server``: the listener; HTTP request → page, refusal, or 101 + session (``handshake``);
  ``meeting_endpoint``: Recall's meeting events sockets and their routing; the drain and
  leaving (``live_sessions``: the sessions held here and how a drain ends them;
  ``pending_handshakes``: bounded handshakes in progress; ``leaving``: ECS says the task
  is going; ``protection``: bounded scale-in protection).
- ``pages``: ``/healthz``, ``/`` and ``/static/*`` (the agent page folder).
- ``auth``: the relay token from Bearer / subprotocol (never the query); subprotocol choice.
- ``admission``: per-process and per-subject session limits.
- ``core``, ``core_client``, ``core_moves``, ``core_legs``: one session as a sans-I/O state
  machine (bytes and time in, bytes and ``effects`` out): the legs' states, closing and
  keepalive; the client's side; re-attach, rollover and leaving; the upstream side.
  Its collaborators: ``client_events`` (what a client event is, policy and tool guard),
  ``client_leg`` and ``upstream_leg`` (each leg's state), ``keepalive`` (pings),
  ``client_bounds`` (what a client may make the relay hold or answer), ``reattach`` (the
  hold buffer), ``rollover_legs`` (when to roll over, the switch) with ``rollover``
  (standby, replay, retiring leg), ``resume`` (seed acknowledgements), ``turn_gate``
  (whether a finished turn is for the agent), ``session_features`` (the meeting, turn
  gate, bill, turn timings and tool events, asked once per recorded model event),
  ``record_items`` (events → items; ``response_usage``: the usage summed per response).
- ``session``: the asyncio shell around one core (sockets, one timer, effects), built on
  ``session_legs`` (its upstream legs: dials, transports, rollover's swap), with
  ``session_exits`` (the handover and the bill's exit, each a task);
  ``session_context`` is what every session shares, ``dialer`` opens its upstream legs,
  ``session_setup`` resolves its bot, persona, tools and greeting, ``session_report`` its
  log lines and counters.
- ``upstream``: the GA handshake with OpenAI (no beta header, no compression).
- ``wire``: WebSocket frame parsing and encoding for the hot path (pure).
- ``events``: the event vocabulary: every type the relay reads, the sniffers, error events.
- ``policy`` (``json_edit``): locked session fields a client may not set.
- ``agent``: ``AgentConfig`` (AGENT_CONFIG file) → the first ``session.update``.
- ``errors``: every refusal and fault with its HTTP status / close code / error code.
- ``logs``, ``metrics``: JSON logs, EMF metrics.
- ``record_writer`` (``record_table``: the table's writes with bounded retries),
  ``history``, ``conversation``: the records' writer, the stored conversation read back
  for a resume, the conversation's turns and seeds.
- ``tool_calls``: which model function calls the relay runs and what it sends back;
  ``tool_guard``: a client may neither invoke nor change a relay tool (both pure);
  ``tool_runner``: the asyncio shell that runs them for a session.
- ``tools``: agent.yaml's tool schema, the registry, built-ins, signed HTTP tools, notes,
  the Recall client (docs/tools.md); ``recall_retry``: Recall's retry rules (CLI shares).
- ``overlay``: a bot's persona over the agent config; ``bot_binding``: a session's bot and
  persona as ``voicebot bot create`` stored them; ``greeting``: the greeting response.
- ``simulated_tools``: how the simulator decides to call a tool (text requests).

Sessions that survive (docs/design/sessions.md). A client that vanishes without a close
frame is held for RELAY_REATTACH_SECONDS (upstream events buffered, at most
RELAY_REATTACH_BUFFER_BYTES) and re-attached when its token subject reconnects to the same
task; on another task (drain, crash) the new upstream is seeded with the stored
conversation; before RELAY_ROLLOVER_SECONDS the upstream is replaced by a seeded one
between turns. What a ``kill -9`` loses: only session records not yet written — queued or
in flight in the recorder (with a healthy table, the last few tens of milliseconds of
turns; at most its 2,048-record queue plus one batch) and up to 15 s of usage counters; a
drain flushes everything within DRAIN_SECONDS. Known limits: assistant turns are stored as
generated (not cut at a barge-in); tool calls are replayed on resume, not on rollover;
seeds are text (the model does not hear the earlier audio); frames already written to a
client socket that then died are not replayed on re-attach (only what arrived after the
relay noticed).
- ``tokens``: the relay token format (shared with the CLI); ``simulator``: a local GA model
  (a package: voice, protocol, records, session and its handlers, server, command).

Compiled or not. ``wire``, ``session`` with ``session_legs``, the ``core`` modules with
``client_leg``, ``upstream_leg`` and ``rollover_legs``, ``events`` and ``metrics`` run every
relayed message; the image ships them compiled with mypyc
(``relay_container/build_native.py``), and the relay logs ``"compiled": true`` at start-up
when it runs them so. A checkout runs the same files
interpreted; CI runs the relay's tests and the browser tests both ways.
"""
