"""Prometheus metrics of the webhook API: ingestion volume, outcomes and acknowledgement latency.

Labels come from fixed sets (the webhook routes and three outcomes), never from the request, so
unauthenticated callers cannot grow them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from core.metrics import Series

WEBHOOKS = Counter(
    "hub_webhooks_total",
    "Webhooks answered, by source and outcome: accepted (2xx), rejected (4xx), unavailable (5xx).",
    ["source", "outcome"],
)
ACK_SECONDS = Histogram(
    "hub_webhook_ack_seconds",
    "Time from receiving a webhook to answering it.",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
IN_FLIGHT = Gauge(
    "hub_webhooks_in_flight",
    "Webhook events being handed to Temporal right now (per API process).",
    multiprocess_mode="livesum",
)
UNKNOWN_SOURCE = "other"  # any path under /webhooks/ that is not a webhook route
OUTCOMES = ("accepted", "rejected", "unavailable", "error")


def webhook_series(sources: list[str]) -> list[Series]:
    """Every source's series, to start at zero (``core.metrics.start_at_zero``)."""
    return [
        *((ACK_SECONDS, (source,)) for source in sources),
        *((WEBHOOKS, (source, outcome)) for source in sources for outcome in OUTCOMES),
    ]


def outcome_of(status_code: int) -> str:
    if status_code < 300:
        return "accepted"
    if status_code < 500:
        return "rejected"
    return "unavailable" if status_code == 503 else "error"  # 500: a bug in the hub


REPORT_HANDOVERS = Counter(
    "hub_dealer_report_handovers_total",
    "Dealers' status reports handed to their lead's run after the answer, or by the sweep: handed_on; "
    "failed (Temporal did not take it, or the database did not record it), error (a bug, logged) or "
    "deferred (too many under way): the sweep tries again.",
    ["way", "result"],
)
