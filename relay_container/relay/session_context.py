"""SessionContext: what every session of a process shares, built once by the server.

The configuration and the process's collaborators (policy, setups, metrics, recorder, the
upstream dialer, the bill's way out of a meeting), passed whole to each ``RelaySession``;
nothing in a session reads the environment or builds these itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.config import RelayConfig
from relay.dialer import Dialer
from relay.metrics import Metrics
from relay.policy import SessionPolicy
from relay.recorder import Recorder
from relay.session_setup import SessionSetups
from relay.tools.meeting_exit import MeetingExit
from relay.upstream import open_upstream


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of a process shares: the configuration, passed whole."""

    config: RelayConfig
    policy: SessionPolicy
    #: The operator's agent and relay tools, and each bot's persona (resolved per session).
    setups: SessionSetups
    metrics: Metrics
    recorder: Recorder
    #: Opens an upstream connection (a seam: benchmarks and tests may hand over their own).
    dial: Dialer = open_upstream
    #: Takes a bot out of its meeting when its bill runs out (None: no RECALL_API_KEY).
    meeting_exit: MeetingExit | None = None
