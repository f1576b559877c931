"""The tools' one error: a failure the model is told about, never a dropped session.

``ToolFailure``'s message goes back to the model as the tool's error payload, so it must
be safe to speak in a meeting: no secret, no URL with credentials, no stack trace.
The registry (``relay.tools.registry``) is the only place that catches it.
"""

from __future__ import annotations


class ToolFailure(Exception):
    """A tool could not do what the model asked; ``str(error)`` is what the model reads."""
