"""Prometheus metrics of the webhook API: ingestion volume, outcomes and acknowledgement latency."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
