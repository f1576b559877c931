"""The relay container's plain environment: the one place stack settings become the
variables ``relay.config`` reads (tests/infra/test_env_contract.py keeps the two in step).
"""

from __future__ import annotations

from typing import Final

from infra.settings import CONTAINER_PORT, RelaySettings

#: The relay's CloudWatch namespace (its EMF metrics, the dashboard, the alarms).
METRICS_NAMESPACE: Final = "RecallVoiceAgent/Relay"


def container_environment(
    settings: RelaySettings, *, table_name: str, metrics_service: str, recall_region: str
) -> dict[str, str]:
    """The relay container's plain environment: the one place settings become variables.

    Names are what ``relay.config`` reads (tests/infra/test_env_contract.py keeps the two
    in step); secrets are not here, they arrive as ECS secrets.
    """
    return {
        "PORT": str(CONTAINER_PORT),
        "RELAY_INTERNAL_PORT": str(settings.internal_port),
        "OPENAI_REALTIME_MODEL": settings.model,
        "RELAY_ALLOWED_MODELS": ",".join(settings.models),
        "RELAY_MAX_SESSIONS": str(settings.max_sessions),
        "RELAY_MAX_SESSIONS_PER_SUBJECT": str(settings.max_sessions_per_subject),
        "RELAY_MAX_SESSION_SECONDS": str(settings.max_session_seconds),
        "DRAIN_SECONDS": str(settings.drain_seconds),
        "TABLE_NAME": table_name,
        "RELAY_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "RELAY_METRICS_SERVICE": metrics_service,
        "LOG_LEVEL": settings.log_level,
        "RECALL_REGION": recall_region,
    }
