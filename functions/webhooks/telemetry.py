"""Powertools Logger and Metrics for the receiver: the one place that names metrics.

Owns how deliveries are counted (one CloudWatch EMF count per outcome, flushed at the end
of each request) and the structured logger (correlation id = ``webhook-id``). It never
logs a body, a signature or a secret; callers pass only ids, event names and outcomes.

Metrics are flushed per request rather than by ``@metrics.log_metrics`` so they behave the
same under Lambda (Mangum) and under uvicorn (``voicebot dev``, tests): the decorator
warns when an invocation added no metric (``GET /healthz``), and a long-running server has
no invocation end. Counting and flushing happen on the event loop thread, back to back,
so concurrent requests cannot interleave in Powertools' shared metric set.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.metrics import Metrics


class Outcome(StrEnum):
    """How a delivery ended; each has its own metric (see :data:`METRIC_NAMES`)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    UNPARSEABLE = "unparseable"
    REJECTED = "rejected"
    TOO_LARGE = "too_large"
    NOT_CONFIGURED = "not_configured"
    STORE_FAILED = "store_failed"
    FAILED = "failed"


#: EMF metric name per outcome (unit Count, dimension ``service``); alarms use these.
METRIC_NAMES: Final[dict[Outcome, str]] = {
    Outcome.STORED: "DeliveriesStored",
    Outcome.DUPLICATE: "DeliveriesDuplicate",
    Outcome.CONFLICT: "DeliveriesConflicting",
    Outcome.UNPARSEABLE: "DeliveriesUnparseable",
    Outcome.REJECTED: "DeliveriesRejected",
    Outcome.TOO_LARGE: "DeliveriesTooLarge",
    Outcome.NOT_CONFIGURED: "DeliveriesNotConfigured",
    Outcome.STORE_FAILED: "DeliveriesStoreFailed",
    Outcome.FAILED: "DeliveriesFailed",
}


class Telemetry:
    """A Powertools ``Logger`` and ``Metrics`` configured from settings, not the environment."""

    def __init__(self, service: str, namespace: str, log_level: str) -> None:
        """Build the logger and metrics for ``service`` in the metrics ``namespace``."""
        from aws_lambda_powertools.logging import Logger
        from aws_lambda_powertools.metrics import Metrics

        self.logger: Logger = Logger(service=service, level=log_level)
        self.metrics: Metrics = Metrics(namespace=namespace, service=service)

    def count(self, outcome: Outcome | str) -> None:
        """Count one delivery under ``outcome`` and flush it as one EMF line."""
        from aws_lambda_powertools.metrics import MetricUnit

        name = METRIC_NAMES.get(Outcome(outcome), METRIC_NAMES[Outcome.FAILED])
        self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        self.metrics.flush_metrics()

    def cold_start(self, context: Any) -> None:
        """Emit the ``ColdStart`` metric once, on the first Lambda invocation."""
        self.metrics.provider.add_cold_start_metric(context)
